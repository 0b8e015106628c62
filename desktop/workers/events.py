"""Plain frozen data that workers hand to the UI. Never widgets."""

from __future__ import annotations

from dataclasses import dataclass

from desktop.core.prompts import PromptInspection, RenderedPrompt
from desktop.core.types import GenerationStats, GGUFInfo, LoadedModelInfo, LoadOptions, StreamToken


@dataclass(frozen=True)
class LoadRequest:
    load_id: int
    path: str
    options: LoadOptions


@dataclass(frozen=True)
class LoadProgress:
    load_id: int
    fraction: float


@dataclass(frozen=True)
class ModelLoaded:
    load_id: int
    info: LoadedModelInfo
    gguf: GGUFInfo


@dataclass(frozen=True)
class LoadFailed:
    load_id: int
    message: str


@dataclass(frozen=True)
class GenerationStarted:
    request_id: int
    prompt_tokens: int


@dataclass(frozen=True)
class GenerationFinished:
    request_id: int
    text: str
    tokens: tuple[StreamToken, ...]
    stats: GenerationStats


@dataclass(frozen=True)
class GenerationFailed:
    request_id: int
    message: str


@dataclass(frozen=True)
class EarlierTurn:
    """A finished turn of the conversation on screen: the user's message and each side's answer
    (text and tokens, so the worker can mark the control tokens each model generated)."""

    user: str
    base_text: str
    base_tokens: tuple[StreamToken, ...]
    instruct_text: str
    instruct_tokens: tuple[StreamToken, ...]


@dataclass(frozen=True)
class PromptJob:
    """What the inspector worker renders: both sides' prompts for one conversation (the earlier
    ``turns``, each side with its own answers, then ``user``)."""

    request_id: int
    user: str
    system: str
    base_mode: str
    base_path: str
    instruct_path: str
    raw_control_tokens: bool = False  # raw mode: the text's control-token texts are control tokens
    turns: tuple[EarlierTurn, ...] = ()
    n_ctx: tuple[int, int] = (0, 0)  # (base, instruct) context sizes; 0: the worker's default


@dataclass(frozen=True)
class SidePrompt:
    side: str  # "base" | "instruct"
    inspection: PromptInspection | None
    error: str | None
    template_source_text: str | None = None


@dataclass(frozen=True)
class PromptReport:
    request_id: int
    base: SidePrompt
    instruct: SidePrompt
    # token shift with the base mode's prompt: the *instruct* side's conversation (its own
    # earlier answers) in the base mode's form; None for a single turn (then it is ``base``'s)
    shift_base: RenderedPrompt | None = None


@dataclass(frozen=True)
class PairJob:
    """Check a base/instruct pair (tokenizers, names) when it is picked: see desktop.core.pair."""

    request_id: int
    base_path: str
    instruct_path: str


@dataclass(frozen=True)
class PairReport:
    request_id: int
    check: object  # desktop.core.pair.PairCheck
