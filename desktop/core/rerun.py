"""Run comparisons headless, and run a saved one again with the same files.

:func:`run_comparison` runs both models on one conversation (as ``based compare`` does);
:func:`run_conversation` runs a conversation of several turns the way the window does it, each
side keeping its own answers; :func:`rerun` checks the files' SHA-256 and replays every turn of a
saved comparison, in order, on one engine per side with the prompt cache on, as the original run
did: a follow-up's prompt holds the previous answer, whose tokens the cache keeps from when they
were generated one at a time, and a cold evaluation of them in one batch could differ slightly in
its logits. Each turn is run with the prompt recorded for it, tokenized exactly as then.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from desktop.core.errors import BasedError
from desktop.core.records import (
    AnswerRecord,
    ComparisonRecord,
    TurnRecord,
    model_sha256,
    now_iso,
)
from desktop.core.sampling import InvalidSetting, check
from desktop.core.types import GenerationResult, SamplingParams

if TYPE_CHECKING:
    from desktop.core.conversation import Conversation
    from desktop.core.engine import Engine
    from desktop.core.types import GenerationRequest, LoadOptions

SIDES = ("base", "instruct")


class ModelFileChanged(BasedError):
    """A model file to re-run with is not the one the comparison was made with."""


def _check_file(label: str, ref_sha: str, path: str) -> None:
    if not os.path.isfile(path):
        raise ModelFileChanged(
            f"The {label} model file {Path(path).name} was not found; pass the path to the same "
            "file the comparison was made with."
        )
    sha = model_sha256(path)
    if sha != ref_sha:
        raise ModelFileChanged(
            f"{Path(path).name} is not the file this comparison was made with (its SHA-256 "
            f"starts {sha[:12]}, the recorded one {ref_sha[:12]}), so the outputs would not be "
            "reproducible; use the original file."
        )


def _run_sides(
    base_path: str,
    instruct_path: str,
    requests: dict[str, list[GenerationRequest]],
    opts: LoadOptions,
    cancel: threading.Event,
) -> dict[str, list[GenerationResult]]:
    """Generate each side's requests in order (base first) on one engine per side, the prompt
    cache carrying each turn into the next; the same file twice is loaded once, its cache emptied
    between the sides (in the window each side has its own engine)."""
    from desktop.core.engine import Engine

    out: dict[str, list[GenerationResult]] = {}
    same = os.path.abspath(base_path) == os.path.abspath(instruct_path)
    engine: Engine | None = None
    try:
        for side, path in (("base", base_path), ("instruct", instruct_path)):
            if engine is None or not same:
                if engine is not None:
                    engine.close()
                engine = Engine(path, opts)
            else:
                engine.clear_kv_cache()
            out[side] = [engine.generate(req, cancel) for req in requests[side]]
    finally:
        if engine is not None:
            engine.close()
    return out


def run_comparison(
    base_path: str | os.PathLike[str],
    instruct_path: str | os.PathLike[str],
    conv: Conversation,
    *,
    base_mode: str = "twin-template",
    params: SamplingParams | None = None,
    load: LoadOptions | None = None,
    cancel: threading.Event | None = None,
    raw_control_tokens: bool = False,
) -> ComparisonRecord:
    """Run one comparison headless on ``conv`` (one message, or a whole conversation whose end
    both models answer) and return its record. ``raw_control_tokens``: raw mode's "my text
    contains control tokens" switch."""
    from desktop.core.gguf_info import validate_gguf
    from desktop.core.history import ModelRef, make_record
    from desktop.core.prompts import BaseMode, render_base, render_instruct
    from desktop.core.types import LoadOptions

    binfo, iinfo = validate_gguf(base_path), validate_gguf(instruct_path)
    bprompt = render_base(BaseMode(base_mode), conv, base=binfo, twin=iinfo,
                          raw_control_tokens=raw_control_tokens)
    iprompt = render_instruct(iinfo, conv, merge_system_if_refused=True)
    params = params or SamplingParams()
    load = load or LoadOptions(n_ctx=2048, seed=params.seed)
    res = _run_sides(
        str(base_path), str(instruct_path),
        {"base": [bprompt.request(1, replace(params, stop=bprompt.stop))],
         "instruct": [iprompt.request(1, replace(params, stop=iprompt.stop))]},
        load, cancel or threading.Event(),
    )
    return make_record(
        base=ModelRef.from_path(base_path, binfo), instruct=ModelRef.from_path(instruct_path, iinfo),
        user=conv.user, system=conv.system, base_mode=BaseMode(base_mode).value,
        base_prompt=bprompt, instruct_prompt=iprompt, params=params, base_result=res["base"][0],
        instruct_result=res["instruct"][0], load=load, raw_control_tokens=raw_control_tokens,
        messages=[m.to_dict() for m in conv.turns], tools=conv.tools,
    )


def run_conversation(
    base_path: str | os.PathLike[str],
    instruct_path: str | os.PathLike[str],
    users: Sequence[str],
    *,
    system: str | None = None,
    base_mode: str = "twin-template",
    params: SamplingParams | None = None,
    load: LoadOptions | None = None,
    cancel: threading.Event | None = None,
    raw_control_tokens: bool = False,
) -> ComparisonRecord:
    """A conversation of ``len(users)`` turns, run as the window runs follow-ups: each side on
    its own engine, each turn's prompt made of the earlier messages and *that side's own* earlier
    answers (in the base mode's form on the base side), the prompt cache carrying one turn into
    the next. Returns the record of the whole conversation."""
    from desktop.core.conversation import ComparedTurn, Message, answer_message, side_conversation
    from desktop.core.engine import Engine
    from desktop.core.gguf_info import validate_gguf
    from desktop.core.history import ModelRef, make_record, turn_record
    from desktop.core.prompts import BaseMode, RenderedPrompt, render_base, render_instruct
    from desktop.core.types import LoadOptions

    if not users:
        raise BasedError("A conversation needs at least one message.")
    cancel = cancel or threading.Event()
    params = params or SamplingParams()
    load = load or LoadOptions(n_ctx=2048, seed=params.seed)
    binfo, iinfo = validate_gguf(base_path), validate_gguf(instruct_path)
    mode = BaseMode(base_mode)
    prompts: dict[str, list[RenderedPrompt]] = {s: [] for s in SIDES}
    results: dict[str, list[GenerationResult]] = {s: [] for s in SIDES}
    for side, path in (("base", base_path), ("instruct", instruct_path)):
        with Engine(path, load) as engine:
            answers: list[Message] = []
            for n, user in enumerate(users):
                done = [ComparedTurn((Message("user", u),), a, a)
                        for u, a in zip(users[:n], answers)]
                conv = side_conversation(system, done, side, (Message("user", user),))
                if side == "base":
                    r = render_base(mode, conv, base=binfo, twin=iinfo, vocab=engine.facts,
                                    raw_control_tokens=raw_control_tokens)
                else:
                    r = render_instruct(iinfo, conv, merge_system_if_refused=True,
                                        vocab=engine.facts)
                res = engine.generate(r.request(n + 1, replace(params, stop=r.stop)), cancel)
                prompts[side].append(r)
                results[side].append(res)
                answers.append(answer_message(res.text, res.tokens, engine.facts))
    earlier = [
        turn_record([{"role": "user", "content": u}], prompts["base"][k], prompts["instruct"][k],
                    results["base"][k], results["instruct"][k], params)
        for k, u in enumerate(users[:-1])
    ]
    return make_record(
        base=ModelRef.from_path(base_path, binfo), instruct=ModelRef.from_path(instruct_path, iinfo),
        user=users[-1], system=system, base_mode=mode.value, base_prompt=prompts["base"][-1],
        instruct_prompt=prompts["instruct"][-1], params=params,
        base_result=results["base"][-1], instruct_result=results["instruct"][-1], load=load,
        raw_control_tokens=raw_control_tokens, earlier=earlier,
    )


def rerun(
    record: ComparisonRecord,
    *,
    base_path: str | os.PathLike[str] | None = None,
    instruct_path: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    cancel: threading.Event | None = None,
) -> ComparisonRecord:
    """Run both models again with the same files (checked by SHA-256), prompts, parameters and
    seed, every turn of a conversation in order on one engine per side; returns the new record.
    The shift view is not recomputed (``shift`` is None)."""
    from desktop.core.export import ExportError
    from desktop.core.types import LoadOptions

    if threads is not None:
        check("n_threads", threads)
    # the file's values are checked before any work (hashing, loading), each in one sentence
    load = record.load
    turns = record.turns()
    try:
        opts = LoadOptions(
            n_ctx=load.get("n_ctx", 4096),
            n_threads=threads or load.get("n_threads"),
            n_gpu_layers=load.get("n_gpu_layers", 0),
            seed=load.get("seed", record.seed),
        )
        requests = {side: [_recorded_request(record, t, side) for t in turns] for side in SIDES}
    except InvalidSetting as exc:
        raise ExportError(exc.sentence(prefix="In this comparison file, ")) from None
    except TypeError:  # a value where a list of settings belongs
        raise ExportError("This comparison file has a damaged setting; export it again from Based.") from None
    bp = str(base_path or record.base.path)
    ip = str(instruct_path or record.instruct.path)
    _check_file("base", record.base.sha256, bp)
    _check_file("instruct", record.instruct.sha256, ip)
    res = _run_sides(bp, ip, requests, opts, cancel or threading.Event())

    def renewed(old: AnswerRecord, r: GenerationResult) -> AnswerRecord:
        return replace(old, text=r.text, tokens=r.tokens, stats=r.stats.to_dict())

    new_turns = [
        replace(t, base_answer=renewed(t.base_answer, res["base"][k]),
                instruct_answer=renewed(t.instruct_answer, res["instruct"][k]))
        for k, t in enumerate(turns)
    ]
    last = new_turns[-1]
    return replace(
        record,
        created=now_iso(),
        base=replace(record.base, path=bp),
        instruct=replace(record.instruct, path=ip),
        base_answer=last.base_answer,
        instruct_answer=last.instruct_answer,
        earlier=tuple(new_turns[:-1]),
        shift=None,
    )


def _recorded_request(record: ComparisonRecord, turn: TurnRecord, side: str
                      ) -> GenerationRequest:
    """The request one side of a recorded turn ran with: its prompt tokenized exactly as then,
    the record's sampling values with that answer's stop strings."""
    from desktop.core.types import GenerationRequest

    params = record.sampling(side, turn)
    return GenerationRequest(1, turn.prompt(side), params, **turn.answer(side).token_args())


def same_outputs(a: ComparisonRecord, b: ComparisonRecord) -> bool:
    """Whether two records hold the same generated token ids and texts on both sides, in every
    turn of a conversation."""
    ta, tb = a.turns(), b.turns()
    return len(ta) == len(tb) and all(
        x.text == y.text and [t.id for t in x.tokens] == [t.id for t in y.tokens]
        for p, q in zip(ta, tb)
        for x, y in ((p.base_answer, q.base_answer), (p.instruct_answer, q.instruct_answer))
    )
