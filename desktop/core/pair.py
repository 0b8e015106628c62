"""Is this a sensible base/instruct pair? Said once, when the pair is picked, before any run.

Two files are read as GGUF metadata and vocabularies only (no weights, no llama.cpp):

- whether they share a tokenizer (token by token, :func:`desktop.core.shift.vocab_compatible`):
  the token-shift view and the alignment report score one model's tokens under the other, so
  they need one;
- whether the "base" file looks like an instruct model: it carries a chat template *and* its
  name says instruct/chat/it (either alone is common in base files: many ship their twin's
  template);
- whether both sides are the same file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from desktop.core.errors import BasedError
from desktop.core.types import GGUFInfo

# "Instruct", "chat", "-it" / "_it" / " it" as a word (Gemma), and the usual tuning recipes
_INSTRUCT_NAME = re.compile(
    r"instruct|chat|(?:^|[-_. ])it(?:$|[-_. ])|(?:^|[-_. ])(?:sft|dpo|rlhf|orpo)(?:$|[-_. ])",
    re.IGNORECASE,
)


def instruct_style_name(info: GGUFInfo) -> bool:
    """Whether the model's name, fine-tune label or file name says instruct/chat/it."""
    texts = (info.name, info.finetune, Path(info.path).stem)
    return any(_INSTRUCT_NAME.search(t) for t in texts if t)


def base_looks_instruct(info: GGUFInfo) -> bool:
    """A chat template and an instruct-style name: most likely an instruct (chat-tuned) model."""
    return bool(info.chat_template) and instruct_style_name(info)


@dataclass(frozen=True)
class PairCheck:
    base_path: str
    instruct_path: str
    same_file: bool
    shares_tokenizer: bool | None  # None: a file could not be read, so nobody can tell
    base_looks_instruct: bool
    tokenizer_reason: str  # why the tokenizers differ, in words ("" when they match)
    lines: tuple[str, ...]  # what to tell the user, one line each, most important first

    @property
    def shift_available(self) -> bool:
        """Token shift and the alignment report need two files that share a tokenizer."""
        return bool(self.shares_tokenizer)

    @property
    def shift_unavailable_reason(self) -> str:
        if self.shift_available:
            return ""
        if self.shares_tokenizer is None:
            return "Token shift and the report need two readable model files."
        return ("Token shift and the alignment report need two models that share a tokenizer, "
                "and these two do not.")


def check_pair(base_path: str | os.PathLike[str], instruct_path: str | os.PathLike[str]) -> PairCheck:
    """What to say about a pair before anything runs. Never raises for a bad file: the pane that
    loads it says what is wrong, so the check only leaves ``shares_tokenizer`` unknown."""
    from desktop.core.gguf_info import read_gguf
    from desktop.core.shift import vocab_compatible

    b, i = str(base_path), str(instruct_path)
    same = os.path.abspath(b) == os.path.abspath(i)
    try:
        binfo = read_gguf(b)
        read_gguf(i)
        vocab = vocab_compatible(b, i)
    except (BasedError, OSError):
        return PairCheck(b, i, same, None, False, "", ())
    looks = base_looks_instruct(binfo) and not same
    lines = []
    if same:
        lines.append("The same file is on both sides: the two answers differ only by how each "
                     "side's prompt is written, not by training.")
    if not vocab.ok:
        lines.append("These two models do not share a tokenizer (they are not twins), so token "
                     "shift and the alignment report are not available for them.")
    if looks:
        lines.append(f"The base side's file ({Path(b).name}) looks like an instruct model (it "
                     "has a chat template and an instruct-style name): pick a base, "
                     "pretrained-only model to see what post-training changed.")
    return PairCheck(b, i, same, vocab.ok, looks, vocab.reason, tuple(lines))
