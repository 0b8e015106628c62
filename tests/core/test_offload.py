"""Auto GPU offload: the model's shape from its file, and the plan for a device's free memory.

The devices here are GpuDevice values (what ggml reports); tests/core/test_vulkan.py loads models
on a real Vulkan device (Mesa's lavapipe)."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.core.devices import GpuDevice, devices_label
from desktop.core.gguf_info import read_tensor_infos
from desktop.core.offload import (
    ALL_LAYERS,
    AUTO_LAYERS,
    HEADROOM,
    USABLE_SHARE,
    gpu_bytes,
    model_shape,
    plan_offload,
)
from desktop.core.tinymodel import build_tiny_model

MIB = 1024 * 1024


def gpu(free: int, total: int | None = None, name: str = "Radeon 780M", index: int = 1) -> GpuDevice:
    return GpuDevice(index, f"Vulkan{index - 1}", name, "Vulkan", False, free, total or max(free, 1))


@pytest.fixture(scope="module")
def eight_layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("offload") / "eight.gguf", vocab="phi-3",
                            n_layer=8, n_embd=64, n_head=4, n_head_kv=2, seed=3, chat_template=None)


def test_shape_is_read_from_the_tensor_table_and_attention_keys(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    assert s.n_layer == 8 and s.n_embd == 64 and s.n_head == 4 and s.n_vocab == 32064
    # F16 K and V per token and layer: 2 KV heads x (16 + 16) values x 2 bytes
    assert s.kv_bytes_per_token == (2 * (16 + 16) * 2,) * 8
    tensors = read_tensor_infos(eight_layers)
    f16 = {n: count * 2 for n, count, t in tensors if t == 1}  # ggml type 1: F16
    f32 = {n: count * 4 for n, count, t in tensors if t == 0}
    sizes = {**f16, **f32}
    assert s.layer_bytes[0] == sum(b for n, b in sizes.items() if n.startswith("blk.0."))
    assert len(set(s.layer_bytes)) == 1  # every layer alike
    out = sum(b for n, b in sizes.items() if n.startswith("output"))
    if "output.weight" not in sizes:  # tied embeddings: llama.cpp copies them to the output layer
        out += sizes["token_embd.weight"]
    assert s.output_bytes == out
    # everything but the token embeddings (which stay on the CPU) is in the shape
    assert s.weight_bytes + sizes["token_embd.weight"] * ("output.weight" in sizes) >= sum(
        b for n, b in sizes.items() if n != "token_embd.weight")


def test_split_model_shape_is_the_whole_model(tiny_split: Path, tiny_unsplit: Path) -> None:
    assert model_shape(tiny_split) == model_shape(tiny_unsplit)


def test_auto_puts_everything_on_a_gpu_with_room(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    need = gpu_bytes(s, 8, 4096, 512, output_on_gpu=True)
    plan = plan_offload(s, n_ctx=4096, n_ubatch=512, requested=AUTO_LAYERS, devices=[gpu(8 * 1024 * MIB)])
    assert (plan.n_gpu_layers, plan.gpu_layers, plan.n_layer) == (ALL_LAYERS, 8, 8)
    assert plan.on_gpu and plan.need_bytes == need and plan.note == ""
    assert plan.device_label == "Radeon 780M via Vulkan"


def test_auto_offloads_the_layers_that_fit_and_says_so(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    # room for exactly 5 layers (without the output layer) within Auto's share of the free memory
    five = gpu_bytes(s, 5, 4096, 512, output_on_gpu=False)
    six = gpu_bytes(s, 6, 4096, 512, output_on_gpu=False)
    free = int((five + HEADROOM + (six - five) // 2) / USABLE_SHARE) + 1
    plan = plan_offload(s, n_ctx=4096, n_ubatch=512, requested=AUTO_LAYERS, devices=[gpu(free)])
    assert (plan.n_gpu_layers, plan.gpu_layers) == (5, 5)
    assert plan.need_bytes == five <= free * USABLE_SHARE - HEADROOM
    assert plan.note.startswith("Only 5 of 8 layers fit the ") and plan.note.endswith(
        "free on Radeon 780M via Vulkan; the rest run on the CPU.")


def test_auto_runs_on_the_cpu_when_not_one_layer_fits(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    plan = plan_offload(s, n_ctx=4096, n_ubatch=512, requested=AUTO_LAYERS, devices=[gpu(64 * MIB)])
    assert (plan.n_gpu_layers, plan.gpu_layers, plan.on_gpu) == (0, 0, False)
    assert "so the model runs on the CPU." in plan.note and "has 67.1 MB free" in plan.note


def test_a_longer_context_needs_more_memory(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    assert gpu_bytes(s, 8, 8192, 512, True) - gpu_bytes(s, 8, 4096, 512, True) >= 4096 * sum(s.kv_bytes_per_token)


def test_memory_other_models_hold_counts(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    need = gpu_bytes(s, 8, 4096, 512, output_on_gpu=True)
    free = int((need + HEADROOM) / USABLE_SHARE) + 1 * MIB
    dev = [gpu(free)]
    assert plan_offload(s, n_ctx=4096, n_ubatch=512, requested=AUTO_LAYERS, devices=dev).gpu_layers == 8
    held = plan_offload(s, n_ctx=4096, n_ubatch=512, requested=AUTO_LAYERS, devices=dev, reserved=need)
    assert held.gpu_layers < 8


def test_choices_other_than_auto_are_taken_as_given(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    small = [gpu(1 * MIB)]
    assert plan_offload(s, n_ctx=512, n_ubatch=512, requested=0, devices=small).on_gpu is False
    three = plan_offload(s, n_ctx=512, n_ubatch=512, requested=3, devices=small)
    assert (three.n_gpu_layers, three.gpu_layers, three.note) == (3, 3, "")
    for asked in (ALL_LAYERS, 99):
        every = plan_offload(s, n_ctx=512, n_ubatch=512, requested=asked, devices=small)
        assert (every.n_gpu_layers, every.gpu_layers) == (ALL_LAYERS, 8)
    none = plan_offload(s, n_ctx=512, n_ubatch=512, requested=3, devices=[])
    assert none.on_gpu is False and none.note == (
        "There is no GPU that llama.cpp can use here, so the model runs on the CPU.")
    assert plan_offload(s, n_ctx=512, n_ubatch=512, requested=AUTO_LAYERS, devices=[]).note == ""


def test_a_device_that_cannot_tell_its_memory_gets_everything(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    unknown = GpuDevice(0, "Vulkan0", "Mystery GPU", "Vulkan", False, 0, 0)
    plan = plan_offload(s, n_ctx=512, n_ubatch=512, requested=AUTO_LAYERS, devices=[unknown])
    assert plan.gpu_layers == 8 and plan.free_bytes is None


def test_two_gpus_share_the_layers(eight_layers: Path) -> None:
    s = model_shape(eight_layers)
    need = gpu_bytes(s, 8, 4096, 512, output_on_gpu=True)
    half = int((need + HEADROOM) / USABLE_SHARE / 2) + MIB
    both = [gpu(half, name="A", index=1), gpu(half, name="B", index=2)]
    plan = plan_offload(s, n_ctx=4096, n_ubatch=512, requested=AUTO_LAYERS, devices=both)
    assert plan.gpu_layers == 8 and plan.device_label == "A + B via Vulkan"
    assert devices_label([gpu(1, name="A"), GpuDevice(2, "CUDA0", "B", "CUDA", False, 1, 1)]) == (
        "A via Vulkan + B via CUDA")
