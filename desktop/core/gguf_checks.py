"""Model-level checks before llama.cpp loads a file: architecture, model parameters, tokenizer.

llama.cpp checks many model parameters with ``GGML_ASSERT``, which aborts the whole process (the
app disappears), and a few tokenizer faults throw C++ exceptions through its C API (same result)
or loop forever. :func:`check_model` refuses such files first, with one sentence. Every rule
names the llama.cpp code it mirrors, in the version llama-cpp-python 0.3.36 vendors:

- ``llama_model_base::load_hparams`` (src/llama-model.cpp) and the loader's typed getters
  (``get_key``, ``get_key_or_arr``, src/llama-model-loader.cpp),
- the architectures' ``load_arch_hparams``/``load_arch_tensors`` and graph builders
  (src/models/*.cpp) where an assert depends only on model parameters,
- ggml's CPU kernels where a model parameter reaches an assert (rms_norm's ``eps >= 0``, rope's
  dimension and section checks; ggml/src/ggml-cpu/ops.cpp),
- ``llama_vocab::impl::load`` and the tokenizers (src/llama-vocab.cpp), in
  :mod:`desktop.core.gguf_vocab_checks`.

Wrong value types are refused here too (llama.cpp would only throw, but the sentence is better).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from desktop.core.errors import GGUFError
from desktop.core.gguf_arch_tables import (
    ARCHITECTURES,
    GRAPH_PER_LAYER_HEADS,
    LLAMA_MAX_EXPERTS,
    LLAMA_MAX_LAYERS,
    MAX_CONTEXT_LENGTH,
    MLA,
    MROPE,
    NEEDS_EXPERTS,
    NO_ROPE,
    PER_LAYER_HEADS,
    RECURRENT,
    ROPE_SCALING_TYPES,
    ROT_IS_HEAD,
    SAME_KV_HEAD,
    SWA_ALWAYS,
    SWA_IF_WINDOW,
    UNUSABLE_WEIGHT_TYPES,
)
from desktop.core.gguf_container import GGUFArray, ParsedGGUF, shown
from desktop.core.gguf_vocab_checks import check_vocab
from desktop.core.words import count

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)

def _n(n: int, noun: str) -> str:
    return count(n, noun)


def _type_name(vtype: int) -> str:
    return {U8: "a small number", I8: "a small number", U16: "a 16-bit number",
            I16: "a 16-bit number", U32: "a 32-bit unsigned number", I32: "a 32-bit signed number",
            F32: "a 32-bit decimal number", BOOL: "true or false", STR: "text", ARR: "a list",
            U64: "a 64-bit number", I64: "a 64-bit number", F64: "a 64-bit decimal number"
            }.get(vtype, "an unknown type")


class ModelMeta:
    """Typed access to a parsed file's metadata, failing the way llama.cpp's getters would."""

    def __init__(self, parsed: ParsedGGUF, name: str) -> None:
        self.kv, self.types, self.name = parsed.kv, parsed.types, name
        self.parsed = parsed

    def fail(self, problem: str, advice: str = "Get another conversion of the model.") -> GGUFError:
        return GGUFError(f"{self.name} cannot be loaded: {problem}. {advice}")

    def has(self, key: str) -> bool:
        return key in self.types

    def _typed(self, key: str, vtype: int, what: str, required: bool) -> Any:
        if key not in self.types:
            if required:
                raise self.fail(f"it does not state its {what} ({key})")
            return None
        if self.types[key] != vtype:
            raise self.fail(
                f"its {what} ({key}) is stored as {_type_name(self.types[key])} instead of "
                f"{_type_name(vtype)}"
            )
        return self.kv[key]

    def u32(self, key: str, what: str, required: bool = False) -> int | None:
        v: int | None = self._typed(key, U32, what, required)
        return v

    def u16(self, key: str, what: str, required: bool = False) -> int | None:
        v: int | None = self._typed(key, U16, what, required)
        return v

    def f32(self, key: str, what: str, required: bool = False) -> float | None:
        v: float | None = self._typed(key, F32, what, required)
        return v

    def boolean(self, key: str, what: str) -> bool | None:
        v: bool | None = self._typed(key, BOOL, what, False)
        return v

    def string(self, key: str, what: str, required: bool = False) -> str | None:
        v: str | None = self._typed(key, STR, what, required)
        return v

    def per_layer(self, key: str, what: str, n: int, *, floats: bool = False) -> list[Any] | None:
        """``get_key_or_arr``: one value for every layer, or an array of exactly ``n``."""
        if key not in self.types:
            return None
        v = self.kv[key]
        if isinstance(v, GGUFArray):
            if v.count != n:
                raise self.fail(f"its {what} ({key}) lists {count(v.count, 'value')} for {count(n, 'layer')}")
            ok = (F32,) if floats else (BOOL, U32, I32)
            if v.subtype not in ok or v.values is None:
                raise self.fail(
                    f"its {what} ({key}) is a list of {_type_name(v.subtype)} values"
                )
            if floats:
                return list(v.values)
            return [int(x) & 0xFFFFFFFF for x in v.values]
        one = self.f32(key, what) if floats else self.u32(key, what)
        return [one] * n


def check_model(parsed: ParsedGGUF, name: str) -> None:
    """Refuse a file llama.cpp would abort, hang or throw through its C API on.

    ``parsed``: the walk of a file ggml's reader accepts (:func:`desktop.core.gguf_container.read_container`);
    ``name``: the file name for the message. Raises :class:`GGUFError` (one sentence).
    """
    m = ModelMeta(parsed, name)
    if _split_part(m) > 0:
        return  # a later part of a split model: its metadata lives in part 1
    arch = m.string("general.architecture", "architecture")
    if arch is None:
        raise m.fail("it does not say which model architecture it uses (general.architecture)")
    if arch == "clip":
        raise GGUFError(
            f"{name} is a vision projector (mmproj) file, not a language model. "
            "Pick the model's main .gguf file."
        )
    if arch not in ARCHITECTURES:
        raise GGUFError(
            f"{name} uses the '{shown(arch)}' architecture, which this version of llama.cpp cannot run. "
            "Pick another model, or a newer version of Based."
        )
    m.string("general.name", "name")  # load_hparams reads it as a string
    m.u32("general.file_type", "file type")
    check_vocab(m)
    split_count = m.kv.get("split.count", 1)
    if parsed.tensors or (isinstance(split_count, int) and split_count > 1):
        check_hparams(m, arch)


def _split_part(m: ModelMeta) -> int:
    """split.no of a split model's part (0 for part 1 or a whole file); llama.cpp reads split.no
    and split.count as 16-bit numbers, and ``gguf_get_val_u16`` asserts on any other type."""
    if not m.has("split.count") and not m.has("split.no"):
        return 0
    m.u16("split.count", "number of parts")
    no = m.u16("split.no", "part number")
    return no or 0


def check_split_part(parsed: ParsedGGUF, name: str) -> None:
    """For a split model's later parts: llama.cpp reads their split.no with an assert on its type."""
    m = ModelMeta(parsed, name)
    m.u16("split.no", "part number", required=True)


# -- model parameters ---------------------------------------------------------------------------


def check_hparams(m: ModelMeta, arch: str) -> None:
    """``llama_model_base::load_hparams`` and what the graph builders assert on its results."""

    def k(suffix: str) -> str:
        return f"{arch}.{suffix}"

    n_ctx = m.u32(k("context_length"), "context length", required=True)
    assert n_ctx is not None
    if n_ctx > MAX_CONTEXT_LENGTH:
        raise m.fail(f"its context length ({count(n_ctx, 'token')}) is beyond any real model")
    n_embd = m.u32(k("embedding_length"), "embedding length", required=True)
    assert n_embd is not None
    m.u32(k("embedding_length_out"), "output embedding length")
    m.boolean(k("attention.causal"), "causal-attention flag")
    m.u32(k("pooling_type"), "pooling type")
    m.u32(k("classifier.pooling_type"), "classifier pooling type")
    n_layer = m.u32(k("block_count"), "number of layers", required=True)
    assert n_layer is not None
    if not 0 < n_layer <= LLAMA_MAX_LAYERS:
        raise m.fail(
            f"its number of layers (block_count) is {n_layer:,}, and llama.cpp runs 1 to "
            f"{LLAMA_MAX_LAYERS}"
        )
    nextn = m.u32(k("nextn_predict_layers"), "number of prediction layers") or 0
    if nextn > n_layer:
        raise m.fail(f"it has more prediction layers ({nextn:,}) than layers ({n_layer:,})")
    _check_experts(m, arch, n_layer)
    if arch == "wavtokenizer-dec":
        m.u32(k("features_length"), "feature length", required=True)
        for part in ("posnet", "convnext"):
            m.u32(k(f"{part}.embedding_length"), f"{part} embedding length", required=True)
            n = m.u32(k(f"{part}.block_count"), f"{part} layer count", required=True) or 0
            if n > n_layer:
                raise m.fail(f"its {part} layer count ({n:,}) is larger than its layer count")

    n_ff = m.per_layer(k("feed_forward_length"), "feed-forward length", n_layer) or [0] * n_layer
    n_head = m.per_layer(k("attention.head_count"), "number of attention heads", n_layer)
    n_head = n_head or [0] * n_layer
    n_head_kv = m.per_layer(k("attention.head_count_kv"), "number of key-value heads", n_layer)
    n_head_kv = n_head_kv or list(n_head)
    del n_ff
    m.boolean(k("rope.scaling.finetuned"), "RoPE fine-tuning flag")
    m.u32(k("rope.scaling.original_context_length"), "original context length")
    m.f32(k("rope.freq_base"), "RoPE base frequency")
    scaling = m.string(k("rope.scaling.type"), "RoPE scaling type")
    if scaling is not None and scaling not in ROPE_SCALING_TYPES:
        raise m.fail(
            f"its RoPE scaling type '{shown(scaling)}' is not one llama.cpp knows "
            f"({', '.join(ROPE_SCALING_TYPES)})"
        )
    for key, what in (("rope.scaling.factor", "RoPE scaling factor"),
                      ("rope.scale_linear", "RoPE scale"),
                      ("rope.scaling.attn_factor", "RoPE attention factor"),
                      ("rope.scaling.alpha", "RoPE scaling alpha")):
        m.f32(k(key), what)

    if k("attention.head_count") in m.types and n_head[0] == 0 and arch not in RECURRENT \
            and arch not in PER_LAYER_HEADS:
        raise m.fail("its number of attention heads (attention.head_count) is 0")
    head_k = head_v = n_rot = 0
    if n_head[0] > 0:
        head_k = m.u32(k("attention.key_length"), "key head size") or n_embd // n_head[0]
        head_v = m.u32(k("attention.value_length"), "value head size") or n_embd // n_head[0]
        if k("attention.key_length") in m.types and m.kv[k("attention.key_length")] == 0:
            head_k = 0
        if k("attention.value_length") in m.types and m.kv[k("attention.value_length")] == 0:
            head_v = 0
        n_rot_v = m.u32(k("rope.dimension_count"), "RoPE dimension count")
        n_rot = head_k if n_rot_v is None else n_rot_v
        if arch in ("llama", "deci", "falcon", "llama-embed") and n_rot != head_k:
            raise m.fail(
                f"its RoPE dimension count ({n_rot}) differs from its head size ({head_k})"
            )
    head_k_swa = m.u32(k("attention.key_length_swa"), "sliding-window key head size")
    head_v_swa = m.u32(k("attention.value_length_swa"), "sliding-window value head size")
    n_rot_swa = m.u32(k("rope.dimension_count_swa"), "sliding-window RoPE dimension count")
    labels = m.kv.get(k("classifier.output_labels"))
    if isinstance(labels, GGUFArray) and labels.subtype != STR:
        raise m.fail(f"its classifier labels ({k('classifier.output_labels')}) are not text")

    _check_floats(m, arch)
    _check_arch(m, arch, n_layer=n_layer, n_embd=n_embd)
    _check_tensors(m, arch, n_layer)

    # graph builders and kernels
    if n_head[0] > 0:
        if arch in SAME_KV_HEAD and head_k != head_v:
            raise m.fail(
                f"its key and value head sizes differ ({head_k} and {head_v}), which the "
                f"{arch} architecture does not support"
            )
        swa_k = head_k if head_k_swa is None else head_k_swa
        swa_v = head_v if head_v_swa is None else head_v_swa
        if arch in SAME_KV_HEAD and swa_k != swa_v and _has_swa(m, arch, n_layer):
            raise m.fail(
                f"its sliding-window key and value head sizes differ ({swa_k} and {swa_v})"
            )
        if arch in ROT_IS_HEAD and n_rot != head_v:
            raise m.fail(
                f"its RoPE dimension count ({n_rot}) differs from its head size ({head_v}), "
                f"which the {arch} architecture does not support"
            )
        if arch not in NO_ROPE and arch not in MLA:
            rots: list[tuple[int | None, int, str]] = [(n_rot, head_k, "")]
            if _has_swa(m, arch, n_layer):
                rots.append((n_rot_swa, head_k_swa or head_k, "sliding-window "))
            for rot, head, what in rots:
                # n_dims 0 never finishes the rope kernel; odd or larger than the head fails
                # GGML_ASSERT(n_dims % 2 == 0) / (n_dims <= ne0)
                if rot is not None and (rot == 0 or rot > head or rot % 2):
                    raise m.fail(
                        f"its {what}RoPE dimension count ({rot}) must be even, above 0 and at "
                        f"most its head size ({head})"
                    )
    if arch not in PER_LAYER_HEADS and (arch in SAME_KV_HEAD or arch in ROT_IS_HEAD):
        uniform = [(n_head_kv, "key-value heads")]  # the KV cache follows them per layer
        if arch in GRAPH_PER_LAYER_HEADS:
            uniform.append((n_head, "attention heads"))
        for counts, what in uniform:
            if len(set(counts)) > 1:
                raise m.fail(
                    f"its number of {what} changes from layer to layer, which the {arch} "
                    "architecture does not support"
                )
    for h, hkv in zip(n_head, n_head_kv, strict=True):
        if hkv and h % hkv and arch in ("rwkv6", "rwkv6qwen2"):
            raise m.fail("its number of attention heads is not a multiple of its key-value heads")


def _check_experts(m: ModelMeta, arch: str, n_layer: int) -> None:
    """load_hparams' mixture-of-experts asserts (src/llama-model.cpp)."""

    def k(suffix: str) -> str:
        return f"{arch}.{suffix}"

    n_expert = m.u32(k("expert_count"), "number of experts") or 0
    used = m.per_layer(k("expert_used_count"), "number of experts used", n_layer) or [0]
    groups = m.u32(k("expert_group_count"), "number of expert groups") or 0
    group_used = m.u32(k("expert_group_used_count"), "number of expert groups used") or 0
    if arch in ("hunyuan_vl", "hunyuan-dense") and n_expert <= 1:
        n_expert, used = 0, [0]
    used_max = max(used)
    if n_expert > LLAMA_MAX_EXPERTS:
        raise m.fail(f"it claims {n_expert:,} experts, more than llama.cpp's {LLAMA_MAX_EXPERTS:,}")
    if used_max > n_expert:
        raise m.fail(f"it uses {_n(used_max, 'expert')} per token but has {n_expert:,}")
    if n_expert > 0:
        if used_max == 0:
            raise m.fail(f"it has {_n(n_expert, 'expert')} but uses none of them "
                         "(expert_used_count)")
        if groups >= n_expert:
            raise m.fail(f"it has {groups:,} expert groups for {n_expert:,} experts")
        if groups > 1 and (n_expert % groups or group_used == 0 or group_used >= groups):
            raise m.fail("its expert groups (expert_group_count, expert_group_used_count) do "
                         "not fit its experts")
    elif groups:
        raise m.fail("it has expert groups but no experts")
    if arch in NEEDS_EXPERTS and (n_expert == 0 or used_max == 0):
        raise m.fail(f"it is a mixture-of-experts architecture ({arch}) without experts")
    if arch == "lfm2moe":
        dense = m.u32(k("leading_dense_block_count"), "number of dense layers") or 0
        if dense < n_layer and (n_expert == 0 or used_max == 0):
            raise m.fail("it has mixture-of-experts layers without experts")
    if arch == "grovemoe" and not m.u32(k("experts_per_group"), "experts per group"):
        raise m.fail("its number of experts per group (experts_per_group) is 0")


def _check_floats(m: ModelMeta, arch: str) -> None:
    """Every decimal model parameter is a number; norm epsilons are >= 0 (ggml's norm kernels
    assert ``eps >= 0.0f``, which a NaN fails too)."""
    prefix = f"{arch}."
    for key, vtype in m.types.items():
        if not key.startswith(prefix):
            continue
        v = m.kv[key]
        if vtype in (F32, F64):
            values: Sequence[float] = (v,)
        elif isinstance(v, GGUFArray) and v.subtype in (F32, F64) and v.values is not None:
            values = v.values
        else:
            continue
        what = shown(key[len(prefix):])
        if not all(math.isfinite(x) for x in values):
            raise m.fail(f"its model parameter {what} is not a finite number")
        if ("epsilon" in what or what.endswith("_eps")) and any(x < 0 for x in values):
            raise m.fail(f"its normalization epsilon ({what}) is negative")


def _check_arch(m: ModelMeta, arch: str, *, n_layer: int, n_embd: int) -> None:
    """Asserts in single architectures' load_arch_hparams, load_arch_tensors and graphs that
    depend only on model parameters (src/models/<arch>.cpp)."""

    def k(suffix: str) -> str:
        return f"{arch}.{suffix}"

    if arch in MROPE:
        sections = m.kv.get(k("rope.dimension_sections"))
        vals = list(sections.values or ()) if isinstance(sections, GGUFArray) else \
            [sections] * 4 if isinstance(sections, int) else []
        if not any(isinstance(x, (int, float)) and x > 0 for x in vals[:3]):
            raise m.fail("its multi-axis RoPE sections (rope.dimension_sections) are missing or all zero")
    if arch in ("rwkv6", "rwkv7") and m.has(k("token_shift_count")):
        if m.u32(k("token_shift_count"), "token shift count") != 2:
            raise m.fail("its token shift count must be 2")
    if arch == "ernie4_5-moe" and m.has(k("expert_count")) and (m.kv.get(k("expert_count")) or 0):
        if not (m.u32(k("interleave_moe_layer_step"), "MoE layer step") or 0):
            raise m.fail("its MoE layer step (interleave_moe_layer_step) is 0")
    if arch == "gemma-embedding":
        for key in ("dense_2_feat_in", "dense_3_feat_out"):
            v = m.u32(k(key), key) or 0
            if v not in (0, n_embd):
                raise m.fail(f"its {key} ({v}) differs from its embedding length ({n_embd})")
    if arch == "nanbeige":
        loops = m.u32(k("num_loops"), "number of loops")
        if loops is not None and (loops < 1 or n_layer * loops > LLAMA_MAX_LAYERS):
            raise m.fail(f"its number of loops ({loops}) is out of range")
    if arch == "hrm_text":
        per = m.u32(k("hrm.layers_per_stack"), "layers per stack") or 0
        h = m.u32(k("hrm.h_cycles"), "H cycles") or 0
        low = m.u32(k("hrm.l_cycles"), "L cycles") or 0
        if per == 0 or h == 0 or low == 0 or per * h * (low + 1) != n_layer:
            raise m.fail("its HRM stack sizes do not add up to its layer count")
    if arch == "minimax-m3" and not m.u32(k("attention.indexer.block_size"), "indexer block size"):
        raise m.fail("its indexer block size is 0")
    if arch in ("jamba", "granitehybrid"):
        inner = m.u32(k("ssm.inner_size"), "SSM inner size")
        if inner is not None and inner != 2 * n_embd:
            raise m.fail("its SSM inner size is not twice its embedding length")
    if arch in ("mamba2", "nemotron_h", "nemotron_h_moe", "falcon-h1", "granitehybrid", "plamo2"):
        inner = m.u32(k("ssm.inner_size"), "SSM inner size") or 0
        heads = m.u32(k("ssm.time_step_rank"), "SSM head count") or 0
        groups = m.u32(k("ssm.group_count"), "SSM group count") or 0
        if heads and inner % heads or groups and inner % groups:
            raise m.fail("its SSM inner size is not a multiple of its SSM heads and groups")
    if arch in ("qwen3next", "qwen35", "qwen35moe", "qwen4exp"):
        v_heads = m.u32(k("ssm.time_step_rank"), "linear-attention value heads") or 0
        k_heads = m.u32(k("ssm.group_count"), "linear-attention key heads") or 0
        if k_heads and v_heads % k_heads:
            raise m.fail("its linear-attention value heads are not a multiple of its key heads")
    if arch in ("deepseek2", "mistral4", "hy_v4"):
        key_mla = m.u32(k("attention.key_length_mla"), "MLA key head size")
        rot = m.u32(k("rope.dimension_count"), "RoPE dimension count")
        if key_mla is not None and rot is not None and key_mla <= rot:
            raise m.fail("its MLA key head size leaves no room beside its RoPE dimensions")
    if arch == "bailingmoe3":
        if m.boolean(k("kda.safe_gate"), "KDA safe gate") is False:
            raise m.fail("its KDA safe gate is off")
        lb = m.f32(k("kda.gate_lower_bound"), "KDA gate lower bound")
        if lb is not None and not lb < 0:
            raise m.fail("its KDA gate lower bound is not negative")
    if m.has(k("attention.sliding_window_pattern")) and _has_swa(m, arch, n_layer):
        pattern = m.kv[k("attention.sliding_window_pattern")]
        if isinstance(pattern, GGUFArray):
            no_swa = pattern.values is not None and not any(pattern.values)
        else:
            no_swa = pattern == 1
        if no_swa:
            raise m.fail("its sliding-window pattern (attention.sliding_window_pattern) leaves "
                         "no layer with sliding-window attention")
    if arch == "eagle3" and n_layer != 1:
        raise m.fail("an EAGLE-3 draft model has exactly one layer")


def _has_swa(m: ModelMeta, arch: str, n_layer: int) -> bool:
    """Whether llama.cpp gives this model sliding-window attention layers."""
    window = m.kv.get(f"{arch}.attention.sliding_window")
    window = window if isinstance(window, int) and not isinstance(window, bool) else 0
    return (arch in SWA_ALWAYS or (arch in SWA_IF_WINDOW and window > 0)
            or (arch == "exaone4" and n_layer == 64))


def _check_tensors(m: ModelMeta, arch: str, n_layer: int) -> None:
    """Tensors that load but crash the first computation: 1-D weights and biases (norms, biases,
    scales) that are not F32 (ggml's CPU add and mul abort: "binary_op: unsupported types"),
    weights of a type ggml cannot multiply or look rows up in (segfault or abort), and a phi3
    layer without attention weights (llama.cpp accepts it and dereferences a null tensor)."""
    names = set()
    for (tname, _n, ttype), shape in zip(m.parsed.tensors, m.parsed.shapes, strict=True):
        names.add(tname)
        # "Most of the codebase that takes in 1D tensors or norms only handles F32 tensors"
        # (llama.cpp's converter); index tensors such as an EAGLE-3 draft's d2t (I64) are fine
        if len(shape) <= 1 and ttype != 0 and tname.endswith((".weight", ".bias")):
            raise m.fail(f"its tensor {shown(tname)} is not stored as F32, which llama.cpp needs "
                         "for one-dimensional tensors")
        if ttype in UNUSABLE_WEIGHT_TYPES and tname.endswith(".weight"):
            raise m.fail(f"its tensor {shown(tname)} is stored as "
                         f"{UNUSABLE_WEIGHT_TYPES[ttype]}, which llama.cpp cannot compute with")
    split = m.kv.get("split.count", 1)
    if arch in ("phi3", "pockettts") and not (isinstance(split, int) and split > 1):
        for i in range(n_layer):
            fused = f"blk.{i}.attn_qkv.weight" in names
            apart = all(f"blk.{i}.attn_{x}.weight" in names for x in "qkv")
            if not (fused or apart):
                raise m.fail(f"layer {i} has no attention weights (blk.{i}.attn_qkv.weight)")
