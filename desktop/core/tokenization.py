"""Prompt tokenization that keeps text from people and files as text.

llama.cpp tokenizes in two steps (``llama_vocab::impl::tokenize`` in llama-vocab.cpp): it first
cuts the text at every occurrence of a special token's text (``tokenizer_st_partition``: tokens
with the CONTROL, USER_DEFINED or UNKNOWN attribute, longest first, honouring their LSTRIP/RSTRIP
attributes), then tokenizes each remaining text fragment on its own. With ``parse_special=false``
it skips the CONTROL and UNKNOWN tokens in the first step, so ``<|im_end|>`` typed by a person
stays text, while USER_DEFINED tokens (Qwen3's ``</think>``) still match, as in Hugging Face's
tokenizers.

A chat prompt mixes both: the template writes control tokens, the messages are text. Based
therefore runs the first step itself, over the control tokens only and never inside a *literal
span* (a stretch of the prompt that a person or a file supplied and that looks like a control
token, see :mod:`desktop.core.prompts`), and hands every fragment to llama.cpp with
``parse_special=false``. When nobody typed a control token, the ids equal llama.cpp's own
``parse_special=true`` tokenization of the whole prompt (tests check this on real tokenizers).

:class:`TokenizerFacts` holds what llama.cpp decided about a vocabulary when it loaded it: whether
it adds BOS and EOS (``llama_vocab_get_add_bos/eos``), whether SentencePiece puts a space before
text, and its special tokens. :func:`display_piece` shows a token's bytes for people.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from desktop.core.types import TokenInfo

if TYPE_CHECKING:
    from desktop.core.llama_vocab import _Vocab

# llama_token_attr bits (llama.h)
ATTR_UNKNOWN = 1 << 0
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8
_PARTITIONED = ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN  # llama.cpp's special-token cache
_SPACE = frozenset(b" \t\n\v\f\r")  # C isspace() in the "C" locale

Span = tuple[int, int]


def display_piece(raw: bytes) -> str:
    """A token's bytes as people should see them: complete UTF-8 characters as text, every byte
    that is not part of a complete character as ``<0xNN>``.

    The three tokens of an emoji split by byte-level BPE read ``<0xF0><0x9F>``, ``<0x98>``,
    ``<0x80>`` instead of three identical ``\ufffd``. The raw bytes stay available where the
    piece is made (``TokenInfo.raw``, ``_Vocab.piece_bytes``)."""
    text = raw.decode("utf-8", "surrogateescape")
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return "".join(
        f"<0x{ord(ch) - 0xDC00:02X}>" if "\udc80" <= ch <= "\udcff" else ch for ch in text
    )


@dataclass(frozen=True)
class SpecialToken:
    """One entry of llama.cpp's special-token cache."""

    id: int
    text: bytes  # matched byte for byte against the prompt
    control: bool  # CONTROL or UNKNOWN: matched only when special tokens are parsed
    lstrip: bool = False  # llama.cpp drops the whitespace before it
    rstrip: bool = False  # ... and after it


@dataclass(frozen=True)
class TokenizerFacts:
    """What llama.cpp decided about one vocabulary when it loaded it."""

    add_bos: bool  # llama_vocab_get_add_bos: the tokenizer puts BOS before a prompt
    add_eos: bool  # llama_vocab_get_add_eos: ... and EOS after it
    add_space_prefix: bool  # SentencePiece puts a space before text that starts a prompt or follows a special token
    bos_id: int | None
    eos_id: int | None
    bos_text: str = ""
    eos_text: str = ""
    specials: tuple[SpecialToken, ...] = field(default=(), repr=False)  # partition order
    source: str = "llama.cpp"  # "llama.cpp", or "file" when only the file's metadata was read

    @cached_property
    def control_texts(self) -> tuple[str, ...]:
        """Texts of the control tokens (what ``parse_special`` turns into a token), longest first."""
        seen: dict[str, None] = {}
        for s in self.specials:
            if s.control and s.text:
                try:
                    seen.setdefault(s.text.decode("utf-8"), None)
                except UnicodeDecodeError:
                    continue
        return tuple(sorted(seen, key=lambda t: (-len(t), t)))

    @cached_property
    def _control_re(self) -> re.Pattern[str] | None:
        texts = self.control_texts
        if not texts:
            return None
        return re.compile("|".join(re.escape(t) for t in texts))

    def find_control_text(self, text: str) -> tuple[Span, ...]:
        """Character spans of control-token texts in ``text`` (longest match first, no overlaps)."""
        rx = self._control_re
        if rx is None or not text:
            return ()
        return tuple(m.span() for m in rx.finditer(text))


def facts_from_vocab(vocab: _Vocab) -> TokenizerFacts:
    """Read a loaded vocabulary's decisions from llama.cpp (one pass over its token attributes)."""
    from desktop.core.llama_vocab import _llama

    lib = _llama()
    ptr = vocab._ptr
    specials: list[SpecialToken] = []
    get_attr = lib.llama_vocab_get_attr
    for tid in range(vocab.n_vocab):
        attr = int(get_attr(ptr, tid))
        if attr & _PARTITIONED:
            text = vocab.text(tid)
            if text:
                specials.append(SpecialToken(
                    tid, text, bool(attr & (ATTR_CONTROL | ATTR_UNKNOWN)),
                    bool(attr & ATTR_LSTRIP), bool(attr & ATTR_RSTRIP),
                ))
    # llama.cpp sorts its cache by text length, longest first (ties: by id here, deterministic)
    specials.sort(key=lambda s: (-len(s.text), s.id))
    bos = int(lib.llama_vocab_bos(ptr))
    eos = int(lib.llama_vocab_eos(ptr))
    probe = vocab.tokenize_bytes(b"a")
    spaced = b"".join(vocab.piece_bytes(t, special=False) for t in probe).startswith(b" ")
    return TokenizerFacts(
        add_bos=bool(lib.llama_vocab_get_add_bos(ptr)) and bos >= 0,
        add_eos=bool(lib.llama_vocab_get_add_eos(ptr)) and eos >= 0,
        add_space_prefix=spaced,
        bos_id=bos if bos >= 0 else None,
        eos_id=eos if eos >= 0 else None,
        bos_text=vocab.text(bos).decode("utf-8", "replace") if bos >= 0 else "",
        eos_text=vocab.text(eos).decode("utf-8", "replace") if eos >= 0 else "",
        specials=tuple(specials),
    )


# -- partition ---------------------------------------------------------------------------------


def byte_spans(text: str, spans: Sequence[Span]) -> list[Span]:
    """Character spans of ``text`` as byte spans of its UTF-8 encoding."""
    out: list[Span] = []
    pos = 0
    nbytes = 0
    for a, b in sorted(spans):
        nbytes += len(text[pos:a].encode("utf-8"))
        start = nbytes
        nbytes += len(text[a:b].encode("utf-8"))
        out.append((start, nbytes))
        pos = b
    return out


def _find(data: bytes, needle: bytes, start: int, end: int, literal: Sequence[Span]) -> int:
    pos = start
    while True:
        m = data.find(needle, pos, end)
        if m < 0 or not literal:
            return m
        stop = m + len(needle)
        if not any(a < stop and m < b for a, b in literal):
            return m
        pos = m + 1


def _present(data: bytes, specials: Sequence[SpecialToken]) -> list[SpecialToken]:
    """The specials whose text occurs in ``data``, in order. A vocabulary can hold thousands
    (Gemma's ``<unusedN>``), so first keep those whose first two bytes occur in ``data``."""
    firsts = {s.text[:1] for s in specials}
    pairs: set[bytes] = set()
    for f in firsts:
        i = data.find(f)
        if i >= 0:
            pairs.add(f)  # a one-byte special's whole text
        while i >= 0:
            pairs.add(data[i:i + 2])
            i = data.find(f, i + 1)
    return [s for s in specials if s.text[:2] in pairs and s.text in data]


def partition(
    data: bytes,
    specials: Sequence[SpecialToken],
    *,
    literal: Sequence[Span] = (),
    parse_special: bool = True,
) -> list[int | Span]:
    """llama.cpp's ``tokenizer_st_partition``: ``data`` cut into special-token ids and raw byte
    ranges ``(start, end)``, in order.

    Control tokens match only when ``parse_special`` is true and never when the match overlaps a
    ``literal`` byte span; USER_DEFINED tokens match everywhere, as in llama.cpp."""
    frags: list[int | Span] = [(0, len(data))] if data else []
    for sp in _present(data, specials) if data else ():
        if sp.control and not parse_special:
            continue
        lit = literal if sp.control else ()
        out: list[int | Span] = []
        for frag in frags:
            if isinstance(frag, int):
                out.append(frag)
                continue
            start, end = frag
            while True:
                m = _find(data, sp.text, start, end, lit)
                if m < 0:
                    break
                left = m
                if sp.lstrip:
                    while left > start and data[left - 1] in _SPACE:
                        left -= 1
                if left > start:
                    out.append((start, left))
                out.append(sp.id)
                start = m + len(sp.text)
                if sp.rstrip:
                    while start < end and data[start] in _SPACE:
                        start += 1
            if start < end:
                out.append((start, end))
        frags = out
    return frags


# -- tokenization ------------------------------------------------------------------------------


def _fragments(
    vocab: _Vocab, text: str, literal_spans: Sequence[Span], parse_special: bool
) -> tuple[bytes, list[Span], list[int | Span]]:
    data = text.encode("utf-8")
    literal = byte_spans(text, literal_spans) if literal_spans else []
    frags = partition(data, vocab.facts.specials, literal=literal, parse_special=parse_special)
    return data, literal, frags


def tokenize_prompt(
    vocab: _Vocab,
    text: str,
    *,
    add_bos: bool,
    add_eos: bool = False,
    literal_spans: Sequence[Span] = (),
    parse_special: bool = False,
) -> list[int]:
    """The token ids a model receives for ``text``: Based's one tokenization entry point.

    ``add_bos`` / ``add_eos``: put BOS before / EOS after the prompt *if the vocabulary adds them*
    (llama.cpp's ``add_special``; a vocabulary that adds no BOS gets none). ``parse_special``:
    turn control-token texts into control tokens, except inside ``literal_spans`` (character
    spans of ``text``). With ``parse_special=False`` the whole text is text (USER_DEFINED tokens
    still match, as in llama.cpp). Never raises for any string."""
    facts = vocab.facts
    data, _, frags = _fragments(vocab, text, literal_spans, parse_special)
    out: list[int] = []
    if add_bos and facts.add_bos and facts.bos_id is not None:
        out.append(facts.bos_id)
    for frag in frags:
        if isinstance(frag, int):
            out.append(frag)
        else:
            out += vocab.tokenize_bytes(data[frag[0]:frag[1]])
    if add_eos and facts.add_eos and facts.eos_id is not None:
        out.append(facts.eos_id)
    return out


def prompt_token_infos(
    vocab: _Vocab,
    text: str,
    *,
    add_bos: bool,
    add_eos: bool = False,
    literal_spans: Sequence[Span] = (),
    parse_special: bool = False,
) -> list[TokenInfo]:
    """:func:`tokenize_prompt` with each token's display piece, raw bytes, whether it is a control
    token, and whether it belongs to control-token text that was kept as text (``typed``: it
    overlaps a literal span, or ``parse_special`` is off and the text looks like a control
    token)."""
    facts = vocab.facts
    data, literal, frags = _fragments(vocab, text, literal_spans, parse_special)
    if not parse_special:
        literal = byte_spans(text, facts.find_control_text(text))
    placed: list[tuple[int, int, int]] = []  # id, byte range in data (empty: not from the text)
    if add_bos and facts.add_bos and facts.bos_id is not None:
        placed.append((facts.bos_id, 0, 0))
    for frag in frags:
        if isinstance(frag, int):
            placed.append((frag, 0, 0))
            continue
        start, end = frag
        ids = vocab.tokenize_bytes(data[start:end])
        lens = [len(vocab.piece_bytes(t, special=False)) for t in ids]
        pos = start - max(0, sum(lens) - (end - start))  # SentencePiece's added space, in front
        for t, n in zip(ids, lens):
            a, b = max(start, pos), min(end, pos + n)
            placed.append((t, a, max(a, b)))
            pos += n
    if add_eos and facts.add_eos and facts.eos_id is not None:
        placed.append((facts.eos_id, len(data), len(data)))
    out: list[TokenInfo] = []
    for tid, a, b in placed:
        raw = vocab.piece_bytes(tid)
        typed = b > a and any(x < b and a < y for x, y in literal)
        out.append(TokenInfo(tid, display_piece(raw), vocab.is_special(tid), raw, typed))
    return out
