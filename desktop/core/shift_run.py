"""The token-shift analysis end to end: generate the instruct answer greedily, build the prefix the
base model sees, score, classify (see :mod:`desktop.core.shift`). Plain Python, synchronous;
engines stay on the calling thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop.core.errors import BasedError
from desktop.core.types import (
    GenerationResult,
    LoadOptions,
    SamplingParams,
    StreamToken,
)

if TYPE_CHECKING:
    from desktop.core.engine import Engine
    from desktop.core.prompts import BaseMode, Conversation, RenderedPrompt
    from desktop.core.tokenization import TokenizerFacts
    from desktop.core.types import GGUFInfo

from desktop.core.shift import (
    PROMPT_SOURCES,
    ShiftResult,
    VocabCheck,
    analyze_shift,
    build_shift,
    require_compatible,
)

# -- end to end --------------------------------------------------------------------------------


def shift_prompt(
    prompt_source: str,
    conv: Conversation,
    *,
    base_info: GGUFInfo,
    instruct_info: GGUFInfo,
    mode: BaseMode | str = "twin-template",
    raw_control_tokens: bool = False,
    vocab: TokenizerFacts | None = None,
) -> RenderedPrompt:
    """The prompt the base model sees before the instruct answer.

    ``"chat"``: the instruct model's own chat-formatted prompt (the paper's setting);
    ``"base-mode"``: the base model's prompt in ``mode`` (``raw_control_tokens``: raw mode's
    switch). ``vocab``: llama.cpp's facts about the tokenizer that reads the prompt (default:
    read from the file).
    """
    from desktop.core.prompts import BaseMode, render_base, render_instruct

    _check_source(prompt_source)
    if prompt_source == "chat":
        return render_instruct(instruct_info, conv, merge_system_if_refused=True, vocab=vocab)
    return render_base(BaseMode(mode), conv, base=base_info, twin=instruct_info,
                       raw_control_tokens=raw_control_tokens, vocab=vocab)


def _check_source(prompt_source: str) -> None:
    if prompt_source not in PROMPT_SOURCES:
        raise BasedError(
            f"Unknown prompt source {prompt_source!r}: choose 'chat' (the instruct model's "
            "prompt) or 'base-mode' (the base model's prompt)."
        )


@dataclass(frozen=True)
class ShiftRun:
    result: ShiftResult
    answer: GenerationResult  # the instruct model's greedy answer
    instruct_prompt: RenderedPrompt
    base_prompt: RenderedPrompt  # equal to instruct_prompt when prompt_source == "chat"
    prompt_source: str
    base_mode: str
    base_name: str
    instruct_name: str
    base_path: str
    instruct_path: str
    vocab: VocabCheck
    params: SamplingParams
    timings: dict[str, float] = field(default_factory=dict)  # load_s, generate_s, score_s, total_s
    load_notes: tuple[str, ...] = ()  # what loading adjusted (context size, no GPU), in words

    @property
    def cancelled(self) -> bool:
        from desktop.core.types import StopReason

        return (self.answer.stats.stop_reason is StopReason.CANCELLED
                or not self.result.complete)

    def to_json_dict(self) -> dict[str, Any]:
        d = self.result.to_json_dict()
        d.update({
            "answer": self.answer.text,
            "prompt_source": self.prompt_source,
            "base_mode": self.base_mode,
            "base": {"name": self.base_name, "file": Path(self.base_path).name},
            "instruct": {"name": self.instruct_name, "file": Path(self.instruct_path).name},
            "base_prompt": self.base_prompt.text,
            "instruct_prompt": self.instruct_prompt.text,
            "stats": self.answer.stats.to_dict(),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "notes": list(self.load_notes),
        })
        return d


EngineOrPath = Any  # Engine | str | os.PathLike[str]


def _is_engine(x: Any) -> bool:
    from desktop.core.engine import Engine

    return isinstance(x, Engine)


def run_shift(
    base: EngineOrPath,
    instruct: EngineOrPath,
    conv: Conversation,
    *,
    prompt_source: str = "chat",
    mode: BaseMode | str = "twin-template",
    max_tokens: int = 128,
    n_ctx: int = 2048,
    threads: int | None = None,
    n_gpu_layers: int = -2,  # Auto (desktop.core.offload.AUTO_LAYERS)
    top_k: int = 5,
    cancel: threading.Event | None = None,
    on_token: Callable[[StreamToken], None] | None = None,
    raw_control_tokens: bool = False,
) -> ShiftRun:
    """Generate the instruct answer greedily and classify it under the base model.

    ``conv`` may be a whole conversation: the answer to its end is scored given every message
    before it (in the instruct model's chat prompt, or the base model's own form of the
    conversation in ``mode``).

    ``base`` / ``instruct`` are GGUF paths (loaded here, on this thread, and closed again; the same
    path twice is loaded once) or already-loaded :class:`Engine` objects owned by this thread.
    Raises :class:`TokenizerMismatch` before loading anything when the vocabularies differ.
    """
    from desktop.core.conversation import check_for_answer
    from desktop.core.engine import Engine

    t_start = time.perf_counter()
    # every value is checked before any work
    check_for_answer(conv, None)
    check_alternatives(top_k)
    SamplingParams.deterministic(max_tokens=max_tokens, top_logprobs=top_k)
    opts = LoadOptions(n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers, seed=0)
    cancel = cancel or threading.Event()
    base_path = base.path if _is_engine(base) else str(base)
    inst_path = instruct.path if _is_engine(instruct) else str(instruct)
    vocab = require_compatible(base_path, inst_path)
    _check_source(prompt_source)
    opened: list[Engine] = []
    try:
        t0 = time.perf_counter()
        if _is_engine(instruct):
            inst_engine: Engine = instruct
        else:
            inst_engine = Engine(inst_path, opts)
            opened.append(inst_engine)
        if _is_engine(base):
            base_engine: Engine = base
        elif os.path.abspath(base_path) == os.path.abspath(inst_path) and not _is_engine(instruct):
            base_engine = inst_engine
        else:
            base_engine = Engine(base_path, opts)
            opened.append(base_engine)
        load_s = time.perf_counter() - t0
        run = shift_with_engines(
            base_engine, inst_engine, conv, prompt_source=prompt_source, mode=mode,
            max_tokens=max_tokens, top_k=top_k, cancel=cancel, on_token=on_token, vocab=vocab,
            raw_control_tokens=raw_control_tokens,
        )
        notes = tuple(dict.fromkeys(e.info.note for e in opened if e.info.note))
    finally:
        for e in opened:
            e.close()
    timings = dict(run.timings)
    timings["load_s"] = load_s
    timings["total_s"] = time.perf_counter() - t_start
    return replace(run, timings=timings, load_notes=notes)


def check_alternatives(top_k: int) -> None:
    """Raise InvalidSetting unless ``top_k`` (base alternatives per token) is 0 to 10."""
    from desktop.core.sampling import check

    check("top_logprobs", top_k, name="The number of base alternatives per token (top-k)")


def shift_with_engines(
    base: Engine,
    instruct: Engine,
    conv: Conversation,
    *,
    prompt_source: str = "chat",
    mode: BaseMode | str = "twin-template",
    max_tokens: int = 128,
    top_k: int = 5,
    cancel: threading.Event | None = None,
    on_token: Callable[[StreamToken], None] | None = None,
    vocab: VocabCheck | None = None,
    score_partial: bool = True,
    raw_control_tokens: bool = False,
) -> ShiftRun:
    """:func:`run_shift` on two loaded engines (owned by the calling thread).

    When ``cancel`` stops the answer part-way, the part that exists is still scored, unless
    ``score_partial`` is False (then the result is empty and marked incomplete).
    """
    from desktop.core.prompts import BaseMode

    t_start = time.perf_counter()
    cancel = cancel or threading.Event()
    if vocab is None:
        vocab = require_compatible(base.path, instruct.path)
    mode = BaseMode(mode)
    inst_prompt = shift_prompt("chat", conv, base_info=base.gguf, instruct_info=instruct.gguf,
                               vocab=instruct.facts)
    if prompt_source == "chat":
        base_prompt = inst_prompt
    else:
        base_prompt = shift_prompt(prompt_source, conv, base_info=base.gguf,
                                   instruct_info=instruct.gguf, mode=mode,
                                   raw_control_tokens=raw_control_tokens, vocab=base.facts)
    params = SamplingParams.deterministic(max_tokens=max_tokens, top_logprobs=top_k)
    req = inst_prompt.request(1, params)
    t0 = time.perf_counter()
    answer = instruct.generate(req, cancel, on_token)
    generate_s = time.perf_counter() - t0
    if prompt_source == "chat":
        prefix = instruct.prompt_ids(req)  # exactly the ids the instruct model saw
    else:
        prefix = base.prompt_ids(base_prompt.request(1, params))
    if not prefix:
        bos = base.gguf.bos_token_id
        prefix = [bos if bos is not None else 0]
    t1 = time.perf_counter()
    stopped = cancel.is_set()
    if stopped and not score_partial:
        result = build_shift([], answer.tokens, greedy=params.greedy, prompt_tokens=len(prefix))
    else:  # a stopped answer is still scored (one fast batch) unless score_partial is False
        result = analyze_shift(base, prefix, answer.tokens, top_k=top_k,
                               cancel=None if stopped else cancel, greedy=params.greedy)
    score_s = time.perf_counter() - t1
    return ShiftRun(
        result=result, answer=answer, instruct_prompt=inst_prompt, base_prompt=base_prompt,
        prompt_source=prompt_source, base_mode=mode.value, base_name=base.gguf.name,
        instruct_name=instruct.gguf.name, base_path=base.path, instruct_path=instruct.path,
        vocab=vocab, params=params,
        timings={"generate_s": generate_s, "score_s": score_s,
                 "total_s": time.perf_counter() - t_start},
    )
