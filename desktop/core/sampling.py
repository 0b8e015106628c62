"""Sampling presets, and the rules every sampling and load value follows. One place for both.

The CLI (``based compare --preset``), the window's preset menu and ``based rerun`` use the same
named presets. :class:`~desktop.core.types.SamplingParams` and
:class:`~desktop.core.types.LoadOptions` call :func:`validate_sampling` / :func:`validate_load`
when they are constructed, and the engine checks again before it calls llama.cpp, so a bad value
never reaches llama.cpp: it becomes one :class:`InvalidSetting` sentence instead.

Where Based adjusts a value itself (the context size, see :func:`fit_context`), it says so.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from desktop.core.errors import BasedError
from desktop.core.words import count

if TYPE_CHECKING:
    from desktop.core.types import LoadOptions, SamplingParams

INT32_MAX = 2**31 - 1  # llama.cpp takes these values as C int32
SEED_MAX = 2**32 - 2  # 0xFFFFFFFF is llama.cpp's LLAMA_DEFAULT_SEED, which means "random seed"
MAX_TOP_LOGPROBS = 10  # alternatives reported per token (llama_vocab.MAX_TOP_K)
MAX_THREADS = 512  # ggml's GGML_MAX_N_THREADS
MAX_N_CTX = 1 << 20  # a KV cache past a million tokens does not fit an ordinary computer
DEFAULT_MAX_TOKENS = 200  # the CLI's and the window's default answer length


class InvalidSetting(BasedError):
    """A sampling or load value is out of range, not a number, NaN or infinite.

    ``str(err)`` is one sentence: "Top-p must be greater than 0 and at most 1, but it is 1.5."
    ``field`` is the dataclass field (``"top_p"``); :meth:`sentence` rewords it for a context
    (a CLI option name, or "In this comparison file, ...").
    """

    def __init__(self, field: str, name: str, rule: str, value: object) -> None:
        self.field = field
        self.name = name
        self.rule = rule
        self.value = value
        super().__init__(self.sentence())

    def sentence(self, name: str | None = None, prefix: str = "") -> str:
        """The sentence, naming the value ``name`` (default: its own name) after ``prefix``."""
        who = name or self.name
        if prefix and name is None:
            who = who[:1].lower() + who[1:]  # "In this file, the seed must be ..."
        elif not prefix:
            who = who[:1].upper() + who[1:]
        return f"{prefix}{who} must be {self.rule}, but it is {shown(self.value)}."


class UnknownPreset(BasedError):
    """A preset name that is not one of :data:`PRESETS`."""


def shown(value: object) -> str:
    """A value as a person reads it in a message: 1.5, 4,096, NaN, infinity, 'hot'."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        n = int(value)
        return f"{n:,}" if abs(n) < 10**15 else f"a number with {len(str(abs(n)))} digits"
    if isinstance(value, numbers.Real):
        try:
            x = float(value)
        except OverflowError:
            return "a number too large to use"
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "infinity" if x > 0 else "minus infinity"
        return f"{x:g}"
    if value is None:
        return "empty"
    text = str(value)
    return repr(text if len(text) <= 40 else text[:39] + "\u2026")


@dataclass(frozen=True)
class Rule:
    """The allowed values of one setting. ``lo``/``hi`` are inclusive unless ``*_open``."""

    name: str  # how a sentence names it: "Top-p", "The context size (n_ctx)"
    integer: bool
    lo: float | None
    hi: float | None
    words: str  # the allowed range in words, e.g. "greater than 0 and at most 1"
    lo_open: bool = False
    optional: bool = False  # None allowed (a default chosen later)
    hi_words: str = ""  # the rule in words when ``hi`` is exceeded, if ``words`` omits ``hi``

    def check(self, field: str, value: Any) -> None:
        """Raise :class:`InvalidSetting` unless ``value`` follows this rule."""
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            kind = "a whole number" if self.integer else "a number"
            raise InvalidSetting(field, self.name, f"{kind}, {self.words}", value)
        if self.integer and not isinstance(value, numbers.Integral):
            raise InvalidSetting(field, self.name, f"a whole number, {self.words}", value)
        x: float
        if self.integer:
            x = int(cast(Any, value))  # exact, however large
        else:
            try:
                x = float(value)
            except OverflowError:  # an int too large for a float
                x = math.inf
            if not math.isfinite(x):
                raise InvalidSetting(field, self.name, f"a finite number, {self.words}", value)
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            raise InvalidSetting(field, self.name, self.words, value)
        if self.hi is not None and x > self.hi:
            raise InvalidSetting(field, self.name, self.hi_words or self.words, value)


SAMPLING_RULES: dict[str, Rule] = {
    "temperature": Rule("Temperature", False, 0.0, None, "0 or more (0 picks the likeliest token)"),
    "top_p": Rule("Top-p", False, 0.0, 1.0, "greater than 0 and at most 1", lo_open=True),
    "top_k": Rule("Top-k", True, 0, INT32_MAX, "0 or more (0 turns it off)",
                  hi_words="at most 2,147,483,647"),
    "min_p": Rule("Min-p", False, 0.0, 1.0, "from 0 to 1"),
    "repeat_penalty": Rule("The repeat penalty", False, 0.0, None,
                           "greater than 0 (1 turns it off)", lo_open=True),
    "seed": Rule("The seed", True, 0, SEED_MAX, "from 0 to 4,294,967,294"),
    "max_tokens": Rule("Max tokens", True, 1, INT32_MAX, "at least 1",
                       hi_words="at most 2,147,483,647"),
    "top_logprobs": Rule("The number of alternatives per token (top logprobs)", True, 0,
                         MAX_TOP_LOGPROBS, f"from 0 to {MAX_TOP_LOGPROBS}"),
}

LOAD_RULES: dict[str, Rule] = {
    "n_ctx": Rule("The context size (n_ctx)", True, 1, MAX_N_CTX, "from 1 to 1,048,576 tokens"),
    "n_threads": Rule("The number of CPU threads", True, 1, MAX_THREADS,
                      f"from 1 to {MAX_THREADS} (or left out for the default)", optional=True),
    "n_gpu_layers": Rule("The number of GPU layers (n_gpu_layers)", True, -2, INT32_MAX,
                         "-2 (Auto), -1 (all layers), 0 (CPU only) or a number of layers",
                         hi_words="at most 2,147,483,647"),
    "seed": SAMPLING_RULES["seed"],
}


def check(field: str, value: Any, *, name: str | None = None) -> None:
    """Check one value by its field name (a sampling or load field). ``name`` renames it in the
    sentence, e.g. ``check("top_logprobs", 12, name="Top-k")`` for ``based shift --top-k``."""
    rule = SAMPLING_RULES.get(field) or LOAD_RULES[field]
    if name is not None:
        rule = replace(rule, name=name)
    rule.check(field, value)


def validate_sampling(p: SamplingParams) -> None:
    """Check every field of ``p``; raise :class:`InvalidSetting` (one sentence) on the first bad
    one. Stop strings must be text."""
    for field, rule in SAMPLING_RULES.items():
        rule.check(field, getattr(p, field))
    stops = p.stop
    if isinstance(stops, (str, bytes)) or not isinstance(stops, (tuple, list)):
        raise InvalidSetting("stop", "The stop strings", "a list of texts", stops)
    for s in stops:
        if not isinstance(s, str):
            raise InvalidSetting("stop", "Each stop string", "text", s)


def validate_load(o: LoadOptions) -> None:
    """Check every field of ``o``; raise :class:`InvalidSetting` on the first bad one."""
    for field, rule in LOAD_RULES.items():
        rule.check(field, getattr(o, field))


def sampling_problem(values: Mapping[str, Any]) -> InvalidSetting | None:
    """The first bad value among ``values`` (field -> value; unknown fields are ignored), or
    None. For forms and files that hold values before a SamplingParams exists."""
    for field, value in values.items():
        rule = SAMPLING_RULES.get(field) or LOAD_RULES.get(field)
        if rule is None:
            continue
        try:
            rule.check(field, value)
        except InvalidSetting as exc:
            return exc
    return None


# -- the context size -------------------------------------------------------------------------


def fit_context(requested: int, n_ctx_train: int) -> tuple[int, str]:
    """The context size to ask llama.cpp for, and a sentence when it differs from ``requested``.

    A context longer than the model was trained on (``n_ctx_train``, 0 when the file does not
    say) gives garbage past that length, so it is lowered to ``n_ctx_train``, and the sentence
    says so. llama.cpp may round the result up again (to a multiple of 256 in the bundled
    version); :func:`context_rounding_note` words that after the load.
    """
    check("n_ctx", requested)
    if n_ctx_train > 0 and requested > n_ctx_train:
        return n_ctx_train, (
            f"This model was trained with a context of {count(n_ctx_train, 'token')}, so Based "
            f"lowered the context size from {requested:,} to {count(n_ctx_train, 'token')}."
        )
    return requested, ""


def context_rounding_note(asked: int, got: int) -> str:
    """A sentence when llama.cpp made a different context size from the one asked for."""
    if got == asked:
        return ""
    way = "up" if got > asked else "down"
    return f"llama.cpp rounded the context size {way} from {asked:,} to {count(got, 'token')}."


# -- presets ----------------------------------------------------------------------------------

PRESET_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")
_VALUE_NAMES = {"temperature": "temperature", "top_p": "top-p", "top_k": "top-k",
                "min_p": "min-p", "repeat_penalty": "repeat penalty", "seed": "seed"}


@dataclass(frozen=True)
class Preset:
    """A named set of sampling values (the fields in :data:`PRESET_FIELDS`)."""

    key: str
    label: str  # the window's menu entry
    summary: str  # one sentence for tooltips and --help
    values: tuple[tuple[str, float | int], ...]

    def params(self, **overrides: Any) -> SamplingParams:
        """SamplingParams with this preset's values; ``overrides`` win (e.g. ``max_tokens``;
        fields a preset does not set keep SamplingParams' defaults)."""
        from desktop.core.types import SamplingParams

        kw: dict[str, Any] = {**dict(self.values), **overrides}
        return SamplingParams(**kw)

    def describe(self) -> str:
        """"temperature 0, top-p 1, top-k 1, min-p 0, repeat penalty 1, seed 0"."""
        return ", ".join(f"{_VALUE_NAMES[k]} {v:g}" for k, v in self.values)


def _preset(key: str, label: str, summary: str, **values: float | int) -> Preset:
    assert set(values) == set(PRESET_FIELDS), key
    return Preset(key, label, summary, tuple((f, values[f]) for f in PRESET_FIELDS))


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        _preset("deterministic", "Deterministic (greedy, fixed seed)",
                "Always the likeliest token: the same answer on every run and in every tool.",
                temperature=0.0, top_p=1.0, top_k=1, min_p=0.0, repeat_penalty=1.0, seed=0),
        _preset("creative", "Creative",
                "Samples from the likely tokens: varied answers (the seed makes a run repeatable).",
                temperature=0.9, top_p=0.95, top_k=50, min_p=0.05, repeat_penalty=1.1, seed=1234),
        _preset("urial", "URIAL paper (temperature 0.3)",
                "The decoding Lin et al. (ICLR 2024) suggest for URIAL: a little randomness and a "
                "mild repeat penalty.",
                temperature=0.3, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.1, seed=0),
    )
}
DEFAULT_PRESET = "deterministic"


def get_preset(key: str) -> Preset:
    """The preset called ``key``; :class:`UnknownPreset` (one sentence) otherwise."""
    try:
        return PRESETS[key]
    except KeyError:
        names = ", ".join(PRESETS)
        raise UnknownPreset(f"There is no sampling preset called {key!r}; choose one of: {names}.") from None


def preset_params(key: str, **overrides: Any) -> SamplingParams:
    """``get_preset(key).params(**overrides)``."""
    return get_preset(key).params(**overrides)


def matching_preset(p: SamplingParams) -> str | None:
    """The key of the preset whose values ``p`` has, or None (custom values)."""
    for key, preset in PRESETS.items():
        if all(getattr(p, f) == v for f, v in preset.values):
            return key
    return None
