"""Plain, frozen data shared by the core, the workers and the UI.

Everything here is immutable and picklable so it can cross threads safely.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenInfo:
    """One token of a prompt as the model's own tokenizer parses it."""

    id: int
    piece: str  # decoded text of this token (may be partial UTF-8 shown with U+FFFD)
    special: bool  # a control/special token (BOS, <|im_start|>, ...)


@dataclass(frozen=True)
class TopAlt:
    """One alternative at a generation or scoring step."""

    id: int
    piece: str
    logprob: float


@dataclass(frozen=True)
class StreamToken:
    """One generated token, as it is made."""

    index: int  # 0-based position in the completion
    id: int
    piece: str  # this token's own text (raw piece, may be a partial UTF-8 sequence)
    text: str  # the new *complete* text this token makes visible (incremental UTF-8)
    logprob: float  # log-probability of the chosen token under the model (full softmax)
    top: tuple[TopAlt, ...] = ()  # top-k alternatives, most likely first


class StopReason(str, enum.Enum):
    EOS = "eos"
    STOP_STRING = "stop"
    LENGTH = "length"
    CONTEXT = "context"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def words(self) -> str:
        return {
            StopReason.EOS: "The model ended its answer.",
            StopReason.STOP_STRING: "Stopped at a stop string.",
            StopReason.LENGTH: "Reached the maximum number of tokens.",
            StopReason.CONTEXT: "The context window is full.",
            StopReason.CANCELLED: "Stopped by you.",
            StopReason.ERROR: "Stopped by an error.",
        }[self]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int = 1234
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    top_logprobs: int = 5  # k <= 10 alternatives reported per token

    @classmethod
    def deterministic(cls, **kw: object) -> SamplingParams:
        base = dict(temperature=0.0, top_p=1.0, top_k=1, min_p=0.0, repeat_penalty=1.0, seed=0)
        base.update(kw)  # type: ignore[arg-type]
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def creative(cls, **kw: object) -> SamplingParams:
        base = dict(temperature=0.9, top_p=0.95, top_k=50, min_p=0.05, repeat_penalty=1.1)
        base.update(kw)  # type: ignore[arg-type]
        return cls(**base)  # type: ignore[arg-type]

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0 or self.top_k == 1


@dataclass(frozen=True)
class GenerationRequest:
    request_id: int
    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    add_bos: bool = True  # let the tokenizer prepend BOS (False when the template wrote it)


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int = 0
    prompt_eval_s: float = 0.0
    time_to_first_token_s: float = 0.0
    generated_tokens: int = 0
    tokens_per_second: float = 0.0
    total_s: float = 0.0
    stop_reason: StopReason = StopReason.EOS
    error: str | None = None
    cached_tokens: int = 0  # leading prompt tokens reused from the KV cache (not evaluated again)

    def to_dict(self) -> dict[str, object]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "prompt_eval_s": round(self.prompt_eval_s, 6),
            "time_to_first_token_s": round(self.time_to_first_token_s, 6),
            "generated_tokens": self.generated_tokens,
            "tokens_per_second": round(self.tokens_per_second, 3),
            "total_s": round(self.total_s, 6),
            "stop_reason": self.stop_reason.value,
            "stop_reason_words": self.stop_reason.words,
            "error": self.error,
        }


@dataclass(frozen=True)
class GenerationResult:
    request_id: int
    text: str
    tokens: tuple[StreamToken, ...]
    stats: GenerationStats


@dataclass(frozen=True)
class ScoredToken:
    """One continuation token scored under a model, given everything before it."""

    index: int
    id: int
    piece: str
    logprob: float
    rank: int  # 1 = the model's most likely token at this step
    top: tuple[TopAlt, ...] = ()


@dataclass(frozen=True)
class LoadOptions:
    n_ctx: int = 4096
    n_threads: int | None = None  # None: physical cores
    n_gpu_layers: int = 0  # -1: all layers
    seed: int = 1234
    # keep the KV cache between calls and evaluate only what follows the longest common token
    # prefix with it (False: every generation and scoring starts from an empty cache)
    prompt_cache: bool = True


@dataclass(frozen=True)
class LoadedModelInfo:
    path: str
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    n_threads: int
    gpu_requested: bool
    gpu_used: bool
    backend: str  # "CPU", "CUDA", "Metal", "Vulkan", ...
    load_s: float
    note: str = ""  # e.g. "No GPU backend in this build; running on CPU."


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file says about itself, read without loading its weights."""

    path: str
    file_size: int
    version: int
    name: str  # general.name, else the file stem
    architecture: str
    size_label: str  # general.size_label, or derived from parameter_count ("135M")
    parameter_count: int  # from general.parameter_count, else summed from tensor shapes
    file_type: str  # quantization, e.g. "Q4_K_M", "Q8_0", "F16"
    context_length: int  # <arch>.context_length (0 if absent)
    tokenizer_model: str  # tokenizer.ggml.model: "llama", "gpt2", ...
    vocab_size: int
    bos_token_id: int | None
    bos_token: str  # text of the BOS token ("" if none)
    eos_token_id: int | None
    eos_token: str
    eot_token_id: int | None
    eot_token: str
    add_bos: bool  # tokenizer.ggml.add_bos_token (llama.cpp's default when absent)
    chat_template: str | None  # the default chat template
    named_templates: dict[str, str] = field(default_factory=dict)  # tokenizer.chat_template.<name>
    license: str = ""
    n_tensors: int = 0
    vocab_only: bool = False  # no tensors: a tokenizer-only file
    basename: str = ""  # general.basename
    finetune: str = ""  # general.finetune ("Instruct", ...)

    @property
    def looks_instruct(self) -> bool:
        text = " ".join([self.name, self.finetune, self.path]).lower()
        return self.chat_template is not None or any(
            k in text for k in ("instruct", "-it", "chat", "_it")
        )
