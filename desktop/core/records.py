"""Comparison records: what a comparison ran with and what it produced, as saved in the history
and exported as JSON (:mod:`desktop.core.history`, :mod:`desktop.core.export`).

A record holds the models (name, path, SHA-256), the exact prompts each side read, the sampling
and load settings, each answer's tokens with their log-probabilities and how its prompt was
tokenized, and, for a conversation, every turn: the messages before each turn's answers and what
each side read and answered (each side keeps its own earlier answers).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop.core.errors import BasedError
from desktop.core.types import GenerationResult, SamplingParams, StreamToken, TopAlt

if TYPE_CHECKING:
    from desktop.core.conversation import Conversation
    from desktop.core.prompts import RenderedPrompt
    from desktop.core.types import GGUFInfo, LoadOptions

RECORD_VERSION = 3  # 2: per-answer add_eos, literal_spans, parse_special; raw_control_tokens
#                     3: conversations (earlier turns, the messages before each turn, tools)


class HistoryError(BasedError):
    """The history database could not be read or written."""


# -- file hashes -------------------------------------------------------------------------------

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, hex. Cached by path, size and modification time, so a model file is
    read once per session (a few seconds for a multi-gigabyte file)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, int(st.st_mtime_ns))
    with _SHA_LOCK:
        hit = _SHA_CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    digest = h.hexdigest()
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest
    return digest


def model_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`file_sha256` of a model in one file; for a split model (part 1's path) the SHA-256 of
    its parts' SHA-256s (hex, one per line, in order), so a changed part changes it."""
    from desktop.core.gguf_split import model_parts

    digests = [file_sha256(p) for p in model_parts(path)]
    return digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    name: str
    path: str
    sha256: str
    file_size: int = 0
    quant: str = ""

    @property
    def file(self) -> str:
        return Path(self.path).name

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], info: GGUFInfo | None = None) -> ModelRef:
        from desktop.core.gguf_info import validate_gguf

        info = info or validate_gguf(path)  # the whole model (every part of a split one)
        return cls(info.name, str(path), model_sha256(path), info.file_size, info.file_type)


@dataclass(frozen=True)
class AnswerRecord:
    """One side's answer and how its prompt was tokenized (see ``RenderedPrompt``). Records
    written before version 2 carry no tokenization fields: they ran with every control-token text
    parsed and BOS/EOS added together, which is how :func:`_answer_from` reads them back."""

    text: str
    tokens: tuple[StreamToken, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)
    add_bos: bool = True
    stop: tuple[str, ...] = ()
    add_eos: bool = False
    literal_spans: tuple[tuple[int, int], ...] = ()
    parse_special: bool = False

    def token_args(self) -> dict[str, Any]:
        """Keyword arguments for ``Engine.tokenize_ids`` / ``tokenize_prompt``."""
        return {"add_bos": self.add_bos, "add_eos": self.add_eos,
                "literal_spans": self.literal_spans, "parse_special": self.parse_special}


def _user_text(messages: Sequence[Mapping[str, Any]], fallback: str = "") -> str:
    """The text of the last user message in OpenAI-style dicts (parts joined)."""
    from desktop.core.conversation import parse_messages

    for m in reversed(list(messages)):
        if m.get("role") == "user":
            return parse_messages([m]).turns[0].text
    return fallback


@dataclass(frozen=True)
class TurnRecord:
    """An earlier turn of a conversation: the messages that came before its answers (after the
    previous turn's answers; OpenAI-style dicts), what each side read, and what it answered."""

    messages: tuple[Mapping[str, Any], ...]
    base_prompt: str
    instruct_prompt: str
    base_answer: AnswerRecord
    instruct_answer: AnswerRecord
    params: Mapping[str, Any] | None = None  # this turn's sampling values (None: the record's)
    seed: int | None = None

    @property
    def user(self) -> str:
        return _user_text(self.messages)

    def answer(self, side: str) -> AnswerRecord:
        return self.base_answer if side == "base" else self.instruct_answer

    def prompt(self, side: str) -> str:
        return self.base_prompt if side == "base" else self.instruct_prompt

    def to_json_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "messages": _jsonable(list(self.messages)),
            "prompts": {"base": self.base_prompt, "instruct": self.instruct_prompt},
            "answers": {"base": _answer_dict(self.base_answer),
                        "instruct": _answer_dict(self.instruct_answer)}}
        if self.params is not None:
            d["params"] = _jsonable(self.params)
        if self.seed is not None:
            d["seed"] = self.seed
        return d

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> TurnRecord:
        return cls(tuple(dict(m) for m in d["messages"]), str(d["prompts"]["base"]),
                   str(d["prompts"]["instruct"]), _answer_from(d["answers"]["base"]),
                   _answer_from(d["answers"]["instruct"]),
                   dict(d["params"]) if d.get("params") is not None else None,
                   _seed(d["seed"]) if d.get("seed") is not None else None)


@dataclass(frozen=True)
class ComparisonRecord:
    created: str  # ISO 8601, local time with offset
    base: ModelRef
    instruct: ModelRef
    user: str
    system: str | None
    base_mode: str
    base_prompt: str
    instruct_prompt: str
    params: dict[str, Any]  # SamplingParams fields (stop per side lives in the answers)
    seed: int
    base_answer: AnswerRecord
    instruct_answer: AnswerRecord
    load: dict[str, Any] = field(default_factory=dict)  # n_ctx, n_threads, n_gpu_layers
    shift: dict[str, Any] | None = None  # ShiftResult.to_json_dict() when the view was computed
    app_version: str = ""
    raw_control_tokens: bool = False  # raw mode's "my text contains control tokens" switch
    # a conversation (record version 3): the messages before the last turn's answers (empty: the
    # one user message ``user``), the earlier turns (oldest first) and the tools offered
    messages: tuple[Mapping[str, Any], ...] = ()
    earlier: tuple[TurnRecord, ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()

    @property
    def n_turns(self) -> int:
        return len(self.earlier) + 1

    def last_messages(self) -> tuple[Mapping[str, Any], ...]:
        """The messages before the last turn's answers (the user's message for a single one)."""
        return self.messages or ({"role": "user", "content": self.user},)

    def turns(self) -> list[TurnRecord]:
        """Every turn, the last one included, oldest first."""
        last = TurnRecord(self.last_messages(), self.base_prompt, self.instruct_prompt,
                          self.base_answer, self.instruct_answer)
        return [*self.earlier, last]

    def conversation(self, side: str) -> Conversation:
        """What one side's last prompt was made from: the system prompt, every turn's messages
        and that side's own earlier answers, the last turn's messages, and the tools."""
        from desktop.core.conversation import Conversation, Message, parse_messages

        turns: list[Message] = []
        for t in self.earlier:
            turns += parse_messages(list(t.messages)).turns if t.messages else []
            ans = t.base_answer if side == "base" else t.instruct_answer
            turns.append(Message("assistant", ans.text))
        turns += parse_messages(list(self.last_messages())).turns
        return Conversation(system=self.system, turns=turns, tools=self.tools)

    def sampling(self, side: str, turn: TurnRecord | None = None) -> SamplingParams:
        """The SamplingParams one side ran with (in ``turn`` of a conversation: that turn's
        values when they were recorded, with that answer's stop strings)."""
        names = set(SamplingParams.__dataclass_fields__)
        params = turn.params if turn is not None and turn.params is not None else self.params
        seed = turn.seed if turn is not None and turn.seed is not None else self.seed
        kw = {k: v for k, v in params.items() if k in names}
        kw["seed"] = int(seed)
        ans = (turn or self).base_answer if side == "base" else (turn or self).instruct_answer
        kw["stop"] = tuple(ans.stop)
        return SamplingParams(**kw)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "record_version": RECORD_VERSION,
            "created": self.created,
            "app_version": self.app_version,
            "models": {"base": _model_dict(self.base), "instruct": _model_dict(self.instruct)},
            "prompts": {
                "user": self.user,
                "system": self.system,
                "base_mode": self.base_mode,
                "base": self.base_prompt,
                "instruct": self.instruct_prompt,
                "raw_control_tokens": self.raw_control_tokens,
            },
            "params": _jsonable(self.params),
            "seed": self.seed,
            "load": _jsonable(self.load),
            "answers": {
                "base": _answer_dict(self.base_answer),
                "instruct": _answer_dict(self.instruct_answer),
            },
            "shift": self.shift,
            "conversation": {
                "messages": _jsonable(list(self.last_messages())),
                "earlier": [t.to_json_dict() for t in self.earlier],
                "tools": _jsonable(list(self.tools)),
            },
        }

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> ComparisonRecord:
        try:
            m, p, a = d["models"], d["prompts"], d["answers"]
            return cls(
                created=str(d["created"]),
                base=_model_from(m["base"]),
                instruct=_model_from(m["instruct"]),
                user=str(p["user"]),
                system=p.get("system"),
                base_mode=str(p["base_mode"]),
                base_prompt=str(p["base"]),
                instruct_prompt=str(p["instruct"]),
                params=dict(d["params"]),
                seed=_seed(d["seed"]),
                base_answer=_answer_from(a["base"]),
                instruct_answer=_answer_from(a["instruct"]),
                load=dict(d.get("load") or {}),
                shift=d.get("shift"),
                app_version=str(d.get("app_version", "")),
                raw_control_tokens=bool(p.get("raw_control_tokens", False)),
                **_conversation_from(d.get("conversation"), str(p["user"])),
            )
        except KeyError as exc:
            raise HistoryError(
                f"This is not a complete Based comparison record: its field \"{exc.args[0]}\" is "
                "missing."
            ) from None
        except (TypeError, ValueError, AttributeError):
            raise HistoryError(
                "This is not a complete Based comparison record: one of its fields holds the wrong "
                "kind of value."
            ) from None


def _conversation_from(d: Any, user: str) -> dict[str, Any]:
    """The conversation fields of a record (absent before version 3: one user message)."""
    if not d:
        return {}
    messages = tuple(dict(m) for m in d.get("messages") or ())
    if messages == ({"role": "user", "content": user},):
        messages = ()
    return {"messages": messages,
            "earlier": tuple(TurnRecord.from_json_dict(t) for t in d.get("earlier") or ()),
            "tools": tuple(dict(t) for t in d.get("tools") or ())}


def _seed(value: Any) -> int:
    """A record's seed, checked by the sampling rules (InvalidSetting: one sentence)."""
    from desktop.core.sampling import check

    check("seed", value)
    return int(value)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list, allow_nan=False))


def _model_dict(m: ModelRef) -> dict[str, Any]:
    return {"name": m.name, "file": m.file, "path": m.path, "sha256": m.sha256,
            "file_size": m.file_size, "quant": m.quant}


def _model_from(d: Mapping[str, Any]) -> ModelRef:
    return ModelRef(str(d["name"]), str(d["path"]), str(d["sha256"]), int(d.get("file_size", 0)),
                    str(d.get("quant", "")))


def _lp(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else float(x)


def _unlp(x: Any) -> float:
    return float("-inf") if x is None else float(x)


def token_dict(t: StreamToken) -> dict[str, Any]:
    return {
        "index": t.index, "id": t.id, "piece": t.piece, "text": t.text, "logprob": _lp(t.logprob),
        "top": [{"id": a.id, "piece": a.piece, "logprob": _lp(a.logprob)} for a in t.top],
    }


def token_from(d: Mapping[str, Any]) -> StreamToken:
    return StreamToken(
        int(d["index"]), int(d["id"]), str(d["piece"]), str(d.get("text", d["piece"])),
        _unlp(d["logprob"]),
        tuple(TopAlt(int(a["id"]), str(a["piece"]), _unlp(a["logprob"])) for a in d.get("top", ())),
    )


def _answer_dict(a: AnswerRecord) -> dict[str, Any]:
    return {"text": a.text, "add_bos": a.add_bos, "add_eos": a.add_eos,
            "parse_special": a.parse_special, "literal_spans": [list(sp) for sp in a.literal_spans],
            "stop": list(a.stop), "stats": _jsonable(a.stats),
            "tokens": [token_dict(t) for t in a.tokens]}


def _answer_from(d: Mapping[str, Any]) -> AnswerRecord:
    add_bos = bool(d.get("add_bos", True))
    old = "parse_special" not in d  # version 1: everything parsed, llama.cpp's add_special
    spans = tuple((int(a), int(b)) for a, b in d.get("literal_spans", ()))
    return AnswerRecord(
        str(d["text"]), tuple(token_from(t) for t in d.get("tokens", ())), dict(d.get("stats", {})),
        add_bos, tuple(str(s) for s in d.get("stop", ())),
        add_eos=bool(d.get("add_eos", add_bos if old else False)),
        literal_spans=spans,
        parse_special=True if old else bool(d["parse_special"]),
    )


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def make_record(
    *,
    base: ModelRef,
    instruct: ModelRef,
    user: str,
    system: str | None,
    base_mode: str,
    base_prompt: RenderedPrompt,
    instruct_prompt: RenderedPrompt,
    params: SamplingParams,
    base_result: GenerationResult,
    instruct_result: GenerationResult,
    load: LoadOptions | Mapping[str, Any] | None = None,
    shift: Mapping[str, Any] | None = None,
    created: str | None = None,
    raw_control_tokens: bool = False,
    messages: Sequence[Mapping[str, Any]] = (),
    earlier: Sequence[TurnRecord] = (),
    tools: Sequence[Mapping[str, Any]] = (),
) -> ComparisonRecord:
    """A record of one comparison from what the engines returned (``params`` without stop;
    each side's stop strings come from its rendered prompt, as the comparison ran them).
    A conversation: ``messages`` before the last answers (default: ``user`` alone), the
    ``earlier`` turns, the ``tools`` offered."""
    from desktop import __version__

    pdict = asdict(params)
    pdict.pop("stop", None)
    if load is None:
        ldict: dict[str, Any] = {}
    elif isinstance(load, Mapping):
        ldict = dict(load)
    else:
        ldict = asdict(load)
    return ComparisonRecord(
        created=created or now_iso(), base=base, instruct=instruct, user=user, system=system,
        base_mode=base_mode, base_prompt=base_prompt.text, instruct_prompt=instruct_prompt.text,
        params=pdict, seed=int(params.seed),
        base_answer=_answer_record(base_result, base_prompt),
        instruct_answer=_answer_record(instruct_result, instruct_prompt),
        load=ldict, shift=dict(shift) if shift is not None else None, app_version=__version__,
        raw_control_tokens=raw_control_tokens,
        messages=_messages_or_none(messages, user), earlier=tuple(earlier),
        tools=tuple(_jsonable(list(tools))),
    )


def _messages_or_none(messages: Sequence[Mapping[str, Any]], user: str
                      ) -> tuple[Mapping[str, Any], ...]:
    ms = tuple(_jsonable(list(messages)))
    return () if ms == ({"role": "user", "content": user},) else ms


def turn_record(messages: Sequence[Mapping[str, Any]], base_prompt: RenderedPrompt,
                instruct_prompt: RenderedPrompt, base_result: GenerationResult,
                instruct_result: GenerationResult, params: SamplingParams | None = None
                ) -> TurnRecord:
    """An earlier turn of a conversation, from its rendered prompts and results (``params``:
    the sampling values it ran with, when they may differ from the last turn's)."""
    pdict: dict[str, Any] | None = None
    if params is not None:
        pdict = asdict(params)
        pdict.pop("stop", None)
    return TurnRecord(tuple(_jsonable(list(messages))), base_prompt.text, instruct_prompt.text,
                      _answer_record(base_result, base_prompt),
                      _answer_record(instruct_result, instruct_prompt), pdict,
                      int(params.seed) if params is not None else None)


def _answer_record(result: GenerationResult, prompt: RenderedPrompt) -> AnswerRecord:
    return AnswerRecord(result.text, result.tokens, result.stats.to_dict(), prompt.add_bos,
                        tuple(prompt.stop), prompt.add_eos, tuple(prompt.literal_spans),
                        prompt.parse_special)
