"""How many of a model's layers go to the GPU: "Auto", CPU only, or a number the user chose.

llama.cpp offloads a model's *last* ``n_gpu_layers`` layers of the ``n_layer + 1`` it counts (the
repeating layers, then the output layer: ``llama_model::load_tensors``, ``i_gpu_start =
n_layer + 1 - n_gpu_layers``); each offloaded layer takes its weights and its part of the KV cache
to the device, and the device needs a compute buffer for one micro-batch. Auto offloads all of it
when that fits the GPU's free memory (read from the device: :mod:`desktop.core.devices`), else
as many layers as fit, else none. The estimate is made from the file's tensor table (exact weight
bytes per layer) and its attention shape (F16 K and V per token, as llama.cpp stores them by
default).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from desktop.core.devices import GpuDevice, devices_label
from desktop.core.gguf_info import human_bytes
from desktop.core.words import count

AUTO_LAYERS = -2  # LoadOptions.n_gpu_layers: Based decides (all, part or none)
ALL_LAYERS = -1  # every layer, the output layer too (llama.cpp's "negative: all layers")
CPU_ONLY = 0

MIB = 1024 * 1024
# Of the free memory a driver reports, Auto plans with this share: the desktop, the browser and
# the driver's own allocations live there too, and the compute estimate is not exact.
USABLE_SHARE = 0.9
HEADROOM = 128 * MIB  # and keeps this much free in any case


@dataclass(frozen=True)
class ModelShape:
    """What the GPU would hold of one model: weights per layer and KV cache per token."""

    n_layer: int
    layer_bytes: tuple[int, ...]  # weights of each repeating layer (blk.N.*), bytes
    output_bytes: int  # the output layer: output.weight (or the tied token embeddings) + output_norm
    kv_bytes_per_token: tuple[int, ...]  # F16 K and V of one token, per layer
    n_vocab: int
    n_embd: int
    n_head: int

    @property
    def weight_bytes(self) -> int:
        return sum(self.layer_bytes) + self.output_bytes


def _kv_value(kv: dict[str, object], key: str) -> object:
    return kv.get(key)


def _per_layer(value: object, n_layer: int, default: int) -> list[int]:
    """A GGUF key that is a number or an array with one number per layer."""
    from desktop.core.gguf_container import GGUFArray

    if isinstance(value, GGUFArray) and value.values is not None:
        items = [int(v) for v in value.values]
        return (items + [items[-1] if items else default] * n_layer)[:n_layer]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [int(value)] * n_layer
    return [default] * n_layer


def model_shape(path: str | os.PathLike[str]) -> ModelShape:
    """The shape of the model at ``path`` (part 1 of a split model: every part is read).

    Weight bytes come from the tensor table (element count and ggml type of each tensor); KV
    bytes from ``<arch>.attention.head_count_kv`` (a number or one per layer) times the key and
    value lengths (``key_length``/``value_length``, default ``embedding_length / head_count``),
    F16. Raises GGUFError for a file that is not a model."""
    from desktop.core.gguf_container import _type_sizes, read_container
    from desktop.core.gguf_split import model_parts

    parts = model_parts(path)
    first = read_container(parts[0])
    kv = first.kv
    arch = str(kv.get("general.architecture") or "")
    tensors = list(first.tensors)
    for part in parts[1:]:
        tensors.extend(read_container(part).tensors)
    sizes = _type_sizes()

    def nbytes(n_elements: int, ggml_type: int) -> int:
        block, per_block = sizes.get(ggml_type, (1, 4))
        return (n_elements + block - 1) // block * per_block

    n_layer = int(kv.get(f"{arch}.block_count") or 0)  # type: ignore[call-overload]
    layer = [0] * n_layer
    output = 0
    tok_embd = 0
    has_output = False
    for name, n, t in tensors:
        b = nbytes(n, t)
        if name.startswith("blk."):
            try:
                i = int(name.split(".", 2)[1])
            except ValueError:
                continue
            if 0 <= i < n_layer:
                layer[i] += b
        elif name.startswith("output.") or name.startswith("output_norm."):
            output += b
            has_output = has_output or name == "output.weight"
        elif name == "token_embd.weight":
            tok_embd = b
    if not has_output:  # tied embeddings: llama.cpp puts a copy on the output layer's device
        output += tok_embd
    n_embd = int(kv.get(f"{arch}.embedding_length") or 0)  # type: ignore[call-overload]
    heads = _per_layer(_kv_value(kv, f"{arch}.attention.head_count"), n_layer, 1)
    n_head = max(heads) if heads else 1
    heads_kv = _per_layer(_kv_value(kv, f"{arch}.attention.head_count_kv"), n_layer, n_head)
    head_dim = n_embd // n_head if n_head else 0
    k_len = int(kv.get(f"{arch}.attention.key_length") or head_dim)  # type: ignore[call-overload]
    v_len = int(kv.get(f"{arch}.attention.value_length") or head_dim)  # type: ignore[call-overload]
    kv_tok = tuple(h * (k_len + v_len) * 2 for h in heads_kv)
    vocab = kv.get("tokenizer.ggml.tokens")
    n_vocab = len(vocab) if vocab is not None and hasattr(vocab, "__len__") else 0  # type: ignore[arg-type]
    return ModelShape(n_layer, tuple(layer), output, kv_tok, n_vocab, n_embd, n_head)


def compute_bytes(shape: ModelShape, n_ctx: int, n_ubatch: int, output_on_gpu: bool) -> int:
    """llama.cpp's device compute buffer for one micro-batch, estimated from above: the logits
    (when the output layer is on the device), a few activations of the embedding width, and the
    attention scores of every head over the whole context (what llama.cpp needs without flash
    attention), all F32."""
    logits = shape.n_vocab if output_on_gpu else 0
    per_token = logits + 8 * shape.n_embd + shape.n_head * n_ctx
    return 4 * n_ubatch * per_token


def gpu_bytes(shape: ModelShape, gpu_layers: int, n_ctx: int, n_ubatch: int,
              output_on_gpu: bool) -> int:
    """Device memory for the last ``gpu_layers`` repeating layers (and the output layer when
    ``output_on_gpu``): their weights, their KV cache at ``n_ctx`` tokens and the compute buffer."""
    k = max(0, min(gpu_layers, shape.n_layer))
    layers = range(shape.n_layer - k, shape.n_layer)
    weights = sum(shape.layer_bytes[i] for i in layers) + (shape.output_bytes if output_on_gpu else 0)
    kv = n_ctx * sum(shape.kv_bytes_per_token[i] for i in layers)
    if k == 0 and not output_on_gpu:
        return 0
    return weights + kv + compute_bytes(shape, n_ctx, n_ubatch, output_on_gpu)


@dataclass(frozen=True)
class OffloadPlan:
    """What to ask llama.cpp for, and why."""

    n_gpu_layers: int  # llama.cpp's n_gpu_layers: 0 (CPU only), a count, or ALL_LAYERS
    gpu_layers: int  # repeating layers on the GPU (0..n_layer): "30/30 layers"
    n_layer: int
    devices: tuple[GpuDevice, ...]  # where the GPU layers go (empty: CPU only)
    need_bytes: int  # device memory the plan needs, estimated
    free_bytes: int | None  # device memory free when planned (None: no GPU or unknown)
    note: str = ""  # one sentence when the user's choice or Auto's could not be fully met

    @property
    def on_gpu(self) -> bool:
        return self.gpu_layers > 0 or (self.n_gpu_layers != 0 and bool(self.devices))

    @property
    def device_label(self) -> str:
        return devices_label(list(self.devices))


def _cpu(shape: ModelShape, note: str = "", free: int | None = None) -> OffloadPlan:
    return OffloadPlan(0, 0, shape.n_layer, (), 0, free, note)


def plan_offload(
    shape: ModelShape,
    *,
    n_ctx: int,
    n_ubatch: int,
    requested: int,
    devices: Sequence[GpuDevice],
    reserved: int = 0,
) -> OffloadPlan:
    """The offload for ``requested`` (``AUTO_LAYERS``, ``ALL_LAYERS``, 0 or a layer count).

    ``devices`` are the GPUs llama.cpp will use (:func:`desktop.core.devices.gpu_devices`);
    llama.cpp splits the GPU layers over them in proportion to their free memory, so Auto plans
    with their sum. ``reserved`` is device memory Based's other loaded models hold that the
    driver does not count as used yet. A count the user chose is taken as it is (a failure to
    load it falls back to the CPU in the engine); Auto never plans past
    ``USABLE_SHARE`` x free − ``HEADROOM``."""
    devs = tuple(devices)
    n = shape.n_layer
    if requested == CPU_ONLY:
        return _cpu(shape)
    if not devs:
        if requested == AUTO_LAYERS:
            return _cpu(shape)
        return _cpu(shape, "There is no GPU that llama.cpp can use here, so the model runs on the CPU.")
    known = all(d.total_bytes > 0 for d in devs)
    free = sum(d.free_bytes for d in devs) - reserved if known else None
    if requested != AUTO_LAYERS:
        all_of_it = requested < 0 or requested > n
        k = n if all_of_it else requested
        need = gpu_bytes(shape, k, n_ctx, n_ubatch, output_on_gpu=all_of_it)
        return OffloadPlan(ALL_LAYERS if all_of_it else k, k, n, devs, need, free)
    if free is None:  # a device that does not say how much memory it has: offload everything
        need = gpu_bytes(shape, n, n_ctx, n_ubatch, output_on_gpu=True)
        return OffloadPlan(ALL_LAYERS, n, n, devs, need, None)
    budget = int(max(0, free) * USABLE_SHARE) - HEADROOM
    need_all = gpu_bytes(shape, n, n_ctx, n_ubatch, output_on_gpu=True)
    if need_all <= budget:
        return OffloadPlan(ALL_LAYERS, n, n, devs, need_all, free)
    k = n - 1 if n > 0 else 0  # without the output layer, from the last layer down
    while k > 0 and gpu_bytes(shape, k, n_ctx, n_ubatch, output_on_gpu=False) > budget:
        k -= 1
    where = devices_label(list(devs))
    if k == 0:
        return _cpu(shape, (
            f"The model and its context need about {human_bytes(need_all)} of GPU memory and "
            f"{where} has {human_bytes(max(0, free))} free, so the model runs on the CPU."), free)
    need = gpu_bytes(shape, k, n_ctx, n_ubatch, output_on_gpu=False)
    return OffloadPlan(k, k, n, devs, need, free, (
        f"Only {k} of {count(n, 'layer')} fit the {human_bytes(max(0, free))} free on {where}; "
        "the rest run on the CPU."))
