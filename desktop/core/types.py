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
    piece: str  # for people: complete characters as text, other bytes as <0xNN> (display_piece)
    special: bool  # a control token (BOS, <|im_start|>, ...)
    raw: bytes = b""  # the token's own bytes
    typed: bool = False  # part of text that looks like a control token but is read as text


@dataclass(frozen=True)
class TopAlt:
    """One alternative at a generation or scoring step."""

    id: int
    piece: str  # display form (see TokenInfo.piece)
    logprob: float


@dataclass(frozen=True)
class StreamToken:
    """One generated token, as it is made."""

    index: int  # 0-based position in the completion
    id: int
    piece: str  # this token's own bytes for people (display_piece: partial UTF-8 as <0xNN>)
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

    def __post_init__(self) -> None:
        # every value is checked on construction (one sentence, InvalidSetting), so a bad one
        # never reaches llama.cpp; the rules live in desktop.core.sampling
        from desktop.core.sampling import validate_sampling

        validate_sampling(self)

    @classmethod
    def deterministic(cls, **kw: object) -> SamplingParams:
        """The "deterministic" preset of desktop.core.sampling.PRESETS; ``kw`` overrides."""
        from desktop.core.sampling import preset_params

        return preset_params("deterministic", **kw)

    @classmethod
    def creative(cls, **kw: object) -> SamplingParams:
        """The "creative" preset of desktop.core.sampling.PRESETS; ``kw`` overrides."""
        from desktop.core.sampling import preset_params

        return preset_params("creative", **kw)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0 or self.top_k == 1


@dataclass(frozen=True)
class GenerationRequest:
    """One generation. Build it from a rendered prompt with ``RenderedPrompt.request`` so the
    prompt's control tokens and literal spans travel with it.

    ``parse_special``: the prompt's control-token texts become control tokens (a chat template's
    markup), except inside ``literal_spans`` (character spans of ``prompt`` that people or files
    supplied). False (the default): the whole prompt is text. ``add_bos`` / ``add_eos``: put BOS
    before / EOS after the prompt when the model's vocabulary adds them (llama.cpp decides)."""

    request_id: int
    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    add_bos: bool = True  # let the tokenizer prepend BOS (False when the template wrote it)
    add_eos: bool = False
    literal_spans: tuple[tuple[int, int], ...] = ()
    parse_special: bool = False


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
    piece: str  # display form (see TokenInfo.piece)
    logprob: float
    rank: int  # 1 = the model's most likely token at this step
    top: tuple[TopAlt, ...] = ()


@dataclass(frozen=True)
class LoadOptions:
    n_ctx: int = 4096
    n_threads: int | None = None  # None: physical cores
    n_gpu_layers: int = -2  # -2: Auto (desktop.core.offload), -1: all layers, 0: CPU only, N: layers
    seed: int = 1234
    # keep the KV cache between calls and evaluate only what follows the longest common token
    # prefix with it (False: every generation and scoring starts from an empty cache)
    prompt_cache: bool = True

    def __post_init__(self) -> None:
        from desktop.core.sampling import validate_load

        validate_load(self)


@dataclass(frozen=True)
class LoadedModelInfo:
    path: str
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    n_threads: int
    gpu_requested: bool
    gpu_used: bool
    backend: str  # "CPU (AVX2)" (the CPU variant llama.cpp runs), or the GPU's: "Vulkan", "CUDA", "Metal"
    load_s: float
    note: str = ""  # sentences about every value adjusted at load (context size, GPU), or ""
    gpu_layers: int = 0  # repeating layers on the GPU (0..n_layer)
    n_layer: int = 0  # the model's repeating layers
    gpu_device: str = ""  # "AMD Radeon 780M via Vulkan" when layers run on a GPU, else ""
    cpu: str = ""  # the CPU backend: "CPU (AVX2)"

    @property
    def where(self) -> str:
        """Where the model runs, for people: "GPU: AMD Radeon 780M via Vulkan, 30/30 layers",
        "GPU: ... via Vulkan, 12/30 layers, the rest on CPU (AVX2)", or "CPU (AVX2)"."""
        if not self.gpu_used or not self.gpu_device:
            return self.cpu or self.backend
        from desktop.core.words import count

        line = f"GPU: {self.gpu_device}, {self.gpu_layers}/{count(self.n_layer, 'layer')}"
        if self.gpu_layers < self.n_layer:
            line += f", the rest on {self.cpu or 'the CPU'}"
        return line


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file says about itself, read without loading its weights."""

    path: str
    file_size: int  # bytes on disk; all parts together once a split model was read whole
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
    # tokenizer.ggml.add_bos_token as the file states it, None when absent. Whether BOS is really
    # added is llama.cpp's decision: desktop.core.tokenization.TokenizerFacts.add_bos.
    add_bos: bool | None
    chat_template: str | None  # the default chat template
    named_templates: dict[str, str] = field(default_factory=dict)  # tokenizer.chat_template.<name>
    license: str = ""
    n_tensors: int = 0
    vocab_only: bool = False  # no tensors: a tokenizer-only file
    basename: str = ""  # general.basename
    finetune: str = ""  # general.finetune ("Instruct", ...)
    # split models (llama.cpp's gguf-split, ``name-00001-of-00003.gguf``); see gguf_split.py
    split_no: int = 0  # split.no: this file's 0-based part number (0 for a whole file)
    split_count: int = 1  # split.count: how many files the model is split into (1: not split)
    split_tensors_count: int = 0  # split.tensors.count: tensors over all parts (0: not split)
    parts: tuple[str, ...] = ()  # every part's path, in order, once the whole model was read

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file of the model: the parts of a split model, else just ``path``."""
        return self.parts or (self.path,)

    @property
    def looks_instruct(self) -> bool:
        text = " ".join([self.name, self.finetune, self.path]).lower()
        return self.chat_template is not None or any(
            k in text for k in ("instruct", "-it", "chat", "_it")
        )
