"""Token-shift analysis: where did post-training change the answer?

After Lin et al., "The Unlocking Spell on Base LLMs" (ICLR 2024). The instruct model's answer is
scored under the base model with the same prefix, in one batched evaluation. Each answer token is
classified by its rank among the base model's predictions at that position:

- *unshifted*: rank 1 (the base model would have picked it too);
- *marginal*: rank 2-3;
- *shifted*: rank 4 or lower.

The two models must share a tokenizer; :func:`vocab_compatible` checks that token by token.
Everything here is plain Python and synchronous; engines stay on the calling thread.
"""

from __future__ import annotations

import enum
import math
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop.core.errors import TokenizerMismatch
from desktop.core.types import (
    ScoredToken,
    StreamToken,
    TopAlt,
)

if TYPE_CHECKING:
    from desktop.core.engine import Engine

PROMPT_SOURCES = ("chat", "base-mode")
# What the base model reads before the instruct answer it scores, in plain words: a short label
# for menus and reports, and a sentence that says why one would pick it.
PROMPT_SOURCE_LABELS = {
    "chat": "the instruct model's own chat prompt",
    "base-mode": "the base model's own prompt",
}
PROMPT_SOURCE_HELP = {
    "chat": "The base model reads exactly the prompt the instruct model answered, so any "
            "difference comes from training alone. The research this view follows (Lin et al., "
            "2024) measures it this way.",
    "base-mode": "The base model reads the prompt it got in this comparison (the base mode "
                 "chosen above), which shows how much that prompt alone moves it towards the "
                 "instruct answer.",
}


# -- classes -----------------------------------------------------------------------------------


class ShiftClass(str, enum.Enum):
    UNSHIFTED = "unshifted"
    MARGINAL = "marginal"
    SHIFTED = "shifted"

    @property
    def words(self) -> str:
        return {
            ShiftClass.UNSHIFTED: "Unshifted: the base model's own first choice (rank 1).",
            ShiftClass.MARGINAL: "Marginal: among the base model's top 3, but not its first "
            "choice (rank 2-3).",
            ShiftClass.SHIFTED: "Shifted: the base model ranked it 4th or lower; post-training "
            "put it here.",
        }[self]

    @property
    def label(self) -> str:
        return self.value.capitalize()

    @property
    def color(self) -> str:
        """A background colour for overlays and reports (light, readable under dark text)."""
        return {
            ShiftClass.UNSHIFTED: "#e3e8ee",
            ShiftClass.MARGINAL: "#ffd98a",
            ShiftClass.SHIFTED: "#ff8f8f",
        }[self]


def classify(rank: int) -> ShiftClass:
    """The shift class of a token the base model ranked ``rank`` (1 = its top choice)."""
    if rank <= 1:
        return ShiftClass.UNSHIFTED
    if rank <= 3:
        return ShiftClass.MARGINAL
    return ShiftClass.SHIFTED


# -- vocabulary check --------------------------------------------------------------------------


@dataclass(frozen=True)
class VocabCheck:
    ok: bool
    reason: str  # plain words; "" when ok
    n_base: int
    n_instruct: int
    first_mismatch: int | None = None  # token id where the vocabularies first differ
    base_piece: str | None = None  # the base's token at first_mismatch (None: past its end)
    instruct_piece: str | None = None


_VOCABS: OrderedDict[tuple[str, int, int], list[str]] = OrderedDict()
_VOCAB_LOCK = threading.Lock()


def _file_key(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, int(st.st_mtime_ns))


def _vocab(path: str | os.PathLike[str]) -> list[str]:
    from desktop.core.gguf_info import read_vocab

    key = _file_key(path)
    with _VOCAB_LOCK:
        hit = _VOCABS.get(key)
        if hit is not None:
            _VOCABS.move_to_end(key)
            return hit
    tokens = read_vocab(path)
    with _VOCAB_LOCK:
        _VOCABS[key] = tokens
        while len(_VOCABS) > 4:
            _VOCABS.popitem(last=False)
    return tokens


def _show(piece: str | None) -> str:
    return "nothing" if piece is None else repr(piece)


def vocab_compatible(
    base_path: str | os.PathLike[str], instruct_path: str | os.PathLike[str]
) -> VocabCheck:
    """Whether two GGUF files share a vocabulary, compared token by token (cached by file)."""
    base = _vocab(base_path)
    inst = _vocab(instruct_path)
    nb, ni = len(base), len(inst)
    bname, iname = Path(base_path).name, Path(instruct_path).name
    if nb == 0 or ni == 0:
        which = bname if nb == 0 else iname
        return VocabCheck(
            False,
            f"{which} has no vocabulary in its file, so Based cannot check that both models read "
            "text the same way; the token-shift view needs two models that share a tokenizer.",
            nb, ni,
        )
    if base is inst or base == inst:
        return VocabCheck(True, "", nb, ni)
    first = next((i for i, (a, b) in enumerate(zip(base, inst)) if a != b), None)
    if first is not None:
        return VocabCheck(
            False,
            f"These models use different tokenizers: token {first} is {_show(base[first])} in "
            f"{bname} but {_show(inst[first])} in {iname}, so the base model cannot score the "
            "instruct model's tokens. The token-shift view needs two models that share a "
            "tokenizer, such as a base model and its own instruct twin.",
            nb, ni, first, base[first], inst[first],
        )
    first = min(nb, ni)
    longer, shorter = (bname, iname) if nb > ni else (iname, bname)
    extra_piece = (base if nb > ni else inst)[first]
    return VocabCheck(
        False,
        f"{longer} has {abs(nb - ni):,} more tokens than {shorter} ({max(nb, ni):,} against "
        f"{min(nb, ni):,}, starting with {_show(extra_piece)}), so some of its tokens do not "
        "exist in the other model. The token-shift view needs two models that share a "
        "tokenizer exactly, such as a base model and its own instruct twin.",
        nb, ni, first,
        base[first] if first < nb else None,
        inst[first] if first < ni else None,
    )


def require_compatible(
    base_path: str | os.PathLike[str], instruct_path: str | os.PathLike[str]
) -> VocabCheck:
    """:func:`vocab_compatible`, raising :class:`TokenizerMismatch` with its reason if not."""
    check = vocab_compatible(base_path, instruct_path)
    if not check.ok:
        raise TokenizerMismatch(check.reason)
    return check


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftToken:
    index: int  # position in the instruct answer (0-based)
    id: int
    piece: str
    rank: int  # rank of this token among the base model's predictions (1 = top)
    base_logprob: float
    instruct_logprob: float | None  # None when the caller passed bare ids without logprobs
    cls: ShiftClass
    base_top: tuple[TopAlt, ...] = ()  # the base model's top-k at this position

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "piece": self.piece,
            "rank": self.rank,
            "base_logprob": _num(self.base_logprob),
            "instruct_logprob": _num(self.instruct_logprob),
            "cls": self.cls.value,
            "base_top": [
                {"id": a.id, "piece": a.piece, "logprob": _num(a.logprob)} for a in self.base_top
            ],
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> ShiftToken:
        return cls(
            int(d["index"]), int(d["id"]), str(d["piece"]), int(d["rank"]),
            _float(d["base_logprob"]),
            None if d.get("instruct_logprob") is None else _float(d["instruct_logprob"]),
            ShiftClass(d["cls"]),
            tuple(TopAlt(int(a["id"]), str(a["piece"]), _float(a["logprob"]))
                  for a in d.get("base_top", ())),
        )


def _num(x: float | None) -> float | None:
    """JSON-safe float: None for NaN/inf (json.dumps would write invalid JSON)."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), 6)


def _float(x: Any) -> float:
    return float("-inf") if x is None else float(x)


SAMPLED_NOTE = (
    "This answer was sampled, not greedy. The research this view follows (Lin et al., 2024) "
    "measures greedy answers, so "
    "these shares are not directly comparable; re-run greedily for comparable numbers."
)


@dataclass(frozen=True)
class ShiftSummary:
    n_tokens: int
    unshifted: int
    marginal: int
    shifted: int
    shifted_indices: tuple[int, ...]  # answer positions of shifted tokens
    marginal_indices: tuple[int, ...]
    top_shifted: tuple[tuple[str, int], ...]  # (piece, count), most frequent first
    greedy: bool = True
    note: str = ""  # e.g. SAMPLED_NOTE
    complete: bool = True  # False when scoring was cancelled part-way

    @property
    def shares(self) -> dict[str, float]:
        n = self.n_tokens or 1
        return {
            "unshifted": self.unshifted / n if self.n_tokens else 0.0,
            "marginal": self.marginal / n if self.n_tokens else 0.0,
            "shifted": self.shifted / n if self.n_tokens else 0.0,
        }

    @property
    def shifted_positions(self) -> tuple[float, ...]:
        """Relative positions (0 = first token, 1 = last) of the shifted tokens."""
        return _relative(self.shifted_indices, self.n_tokens)

    @property
    def marginal_positions(self) -> tuple[float, ...]:
        return _relative(self.marginal_indices, self.n_tokens)

    def to_json_dict(self) -> dict[str, Any]:
        s = self.shares
        return {
            "unshifted": s["unshifted"],
            "marginal": s["marginal"],
            "shifted": s["shifted"],
            "counts": {"unshifted": self.unshifted, "marginal": self.marginal,
                       "shifted": self.shifted},
            "n_tokens": self.n_tokens,
            "shifted_indices": list(self.shifted_indices),
            "marginal_indices": list(self.marginal_indices),
            "top_shifted": [{"piece": p, "count": c} for p, c in self.top_shifted],
            "greedy": self.greedy,
            "note": self.note,
            "complete": self.complete,
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> ShiftSummary:
        c = d["counts"]
        return cls(
            int(d["n_tokens"]), int(c["unshifted"]), int(c["marginal"]), int(c["shifted"]),
            tuple(int(i) for i in d.get("shifted_indices", ())),
            tuple(int(i) for i in d.get("marginal_indices", ())),
            tuple((str(t["piece"]), int(t["count"])) for t in d.get("top_shifted", ())),
            bool(d.get("greedy", True)), str(d.get("note", "")), bool(d.get("complete", True)),
        )


def _relative(indices: Sequence[int], n: int) -> tuple[float, ...]:
    if n <= 1:
        return tuple(0.0 for _ in indices)
    return tuple(i / (n - 1) for i in indices)


def summarize(
    tokens: Sequence[ShiftToken], *, greedy: bool = True, complete: bool = True, top_n: int = 15
) -> ShiftSummary:
    counts = Counter(t.cls for t in tokens)
    shifted = [t for t in tokens if t.cls is ShiftClass.SHIFTED]
    freq = Counter(t.piece for t in shifted)
    top = tuple(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n])
    return ShiftSummary(
        n_tokens=len(tokens),
        unshifted=counts.get(ShiftClass.UNSHIFTED, 0),
        marginal=counts.get(ShiftClass.MARGINAL, 0),
        shifted=counts.get(ShiftClass.SHIFTED, 0),
        shifted_indices=tuple(t.index for t in shifted),
        marginal_indices=tuple(t.index for t in tokens if t.cls is ShiftClass.MARGINAL),
        top_shifted=top,
        greedy=greedy,
        note="" if greedy else SAMPLED_NOTE,
        complete=complete,
    )


@dataclass(frozen=True)
class ShiftResult:
    tokens: tuple[ShiftToken, ...]
    summary: ShiftSummary
    prompt_tokens: int = 0  # length of the prefix the base model saw
    score_s: float = 0.0  # time of the batched scoring + classification

    @property
    def complete(self) -> bool:
        return self.summary.complete

    def to_json_dict(self) -> dict[str, Any]:
        """``{"tokens": [{piece, rank, base_logprob, instruct_logprob, cls, ...}],
        "summary": {unshifted, marginal, shifted (fractions), ...}}``."""
        return {
            "tokens": [t.to_json_dict() for t in self.tokens],
            "summary": self.summary.to_json_dict(),
            "prompt_tokens": self.prompt_tokens,
            "score_s": round(self.score_s, 6),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> ShiftResult:
        return cls(
            tuple(ShiftToken.from_json_dict(t) for t in d["tokens"]),
            ShiftSummary.from_json_dict(d["summary"]),
            int(d.get("prompt_tokens", 0)),
            float(d.get("score_s", 0.0)),
        )


# -- analysis ----------------------------------------------------------------------------------


def _answer(
    instruct_tokens: Sequence[StreamToken] | Sequence[int],
    instruct_logprobs: Sequence[float] | None,
) -> tuple[list[int], list[float | None]]:
    ids: list[int] = []
    lps: list[float | None] = []
    tokens: Sequence[Any] = instruct_tokens
    for i, t in enumerate(tokens):
        if isinstance(t, StreamToken):
            ids.append(int(t.id))
            lps.append(float(t.logprob))
        else:
            ids.append(int(t))
            lps.append(None)
        if instruct_logprobs is not None and i < len(instruct_logprobs):
            lps[-1] = float(instruct_logprobs[i])
    return ids, lps


def build_shift(
    scored: Sequence[ScoredToken],
    instruct_tokens: Sequence[StreamToken] | Sequence[int],
    instruct_logprobs: Sequence[float] | None = None,
    *,
    greedy: bool = True,
    prompt_tokens: int = 0,
    score_s: float = 0.0,
) -> ShiftResult:
    """Classify tokens already scored under the base model (``Engine.score`` output, in order).

    Fewer scored tokens than answer tokens means scoring was cancelled: the result is partial.
    """
    ids, lps = _answer(instruct_tokens, instruct_logprobs)
    out: list[ShiftToken] = []
    for s in scored:
        j = int(s.index)
        if j >= len(ids) or ids[j] != s.id:
            raise ValueError("scored tokens do not match the instruct answer")
        out.append(
            ShiftToken(j, s.id, s.piece, s.rank, s.logprob, lps[j], classify(s.rank), s.top)
        )
    complete = len(out) == len(ids)
    return ShiftResult(
        tuple(out), summarize(out, greedy=greedy, complete=complete), prompt_tokens, score_s
    )


def analyze_shift(
    base: Engine,
    prompt_ids: Sequence[int],
    instruct_tokens: Sequence[StreamToken] | Sequence[int],
    instruct_logprobs: Sequence[float] | None = None,
    top_k: int = 5,
    cancel: threading.Event | None = None,
    *,
    greedy: bool = True,
) -> ShiftResult:
    """Score the instruct answer under ``base`` after ``prompt_ids`` in ONE batched evaluation
    and classify every token. ``greedy=False`` marks the figures as coming from a sampled answer.
    """
    ids, _ = _answer(instruct_tokens, instruct_logprobs)
    t0 = time.perf_counter()
    scored = base.score(list(prompt_ids), ids, top_k=top_k, cancel=cancel) if ids else []
    res = build_shift(scored, instruct_tokens, instruct_logprobs, greedy=greedy,
                      prompt_tokens=len(prompt_ids))
    return ShiftResult(res.tokens, res.summary, res.prompt_tokens, time.perf_counter() - t0)


def reference_shift(
    base: Engine,
    prompt_ids: Sequence[int],
    instruct_tokens: Sequence[StreamToken] | Sequence[int],
    instruct_logprobs: Sequence[float] | None = None,
    top_k: int = 5,
    *,
    greedy: bool = True,
) -> ShiftResult:
    """The same analysis computed the straightforward way: one token at a time, for tests."""
    ids, _ = _answer(instruct_tokens, instruct_logprobs)
    t0 = time.perf_counter()
    scored = base.score_stepwise(list(prompt_ids), ids, top_k=top_k) if ids else []
    res = build_shift(scored, instruct_tokens, instruct_logprobs, greedy=greedy,
                      prompt_tokens=len(prompt_ids))
    return ShiftResult(res.tokens, res.summary, res.prompt_tokens, time.perf_counter() - t0)
