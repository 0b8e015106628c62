"""Each pane says where its model runs, and the user chooses where models run (Auto, CPU only, a
number of GPU layers). The test process has no GPU device (tests/core/test_vulkan.py loads on
one), so the GPU lines are drawn from the LoadedModelInfo the engine makes."""

from __future__ import annotations

from desktop.core.engine import cpu_backend_name
from desktop.core.settings import Settings
from desktop.core.types import GGUFInfo, LoadedModelInfo
from desktop.ui.pane import ModelPane

LONG = 20_000


def _info(**kw: object) -> LoadedModelInfo:
    base: dict[str, object] = dict(path="m.gguf", n_ctx=4096, n_ctx_train=8192, n_vocab=49152,
                                   n_threads=4, gpu_requested=True, gpu_used=True, backend="Vulkan",
                                   load_s=0.5, gpu_layers=30, n_layer=30,
                                   gpu_device="AMD Radeon 780M (RADV GFX1103_R1) via Vulkan",
                                   cpu="CPU (AVX2)")
    base.update(kw)
    return LoadedModelInfo(**base)  # type: ignore[arg-type]


def _gguf() -> GGUFInfo:
    return GGUFInfo(path="m.gguf", file_size=100_000_000, version=3, name="SmolLM2", architecture="llama",
                    size_label="135M", parameter_count=135_000_000, file_type="Q4_1", context_length=8192,
                    tokenizer_model="gpt2", vocab_size=49152, bos_token_id=1, bos_token="<|im_start|>",
                    eos_token_id=2, eos_token="<|im_end|>", eot_token_id=None, eot_token="",
                    add_bos=False, chat_template=None)


def wait_loaded(qtbot, w) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: all(w.controller.loaded[s] is not None for s in ("base", "instruct")),
                    timeout=LONG)


def test_pane_names_the_gpu_and_its_layers(qtbot) -> None:  # type: ignore[no-untyped-def]
    pane = ModelPane("base", "Base")
    qtbot.addWidget(pane)
    pane.set_model_info(_info(), _gguf())
    assert pane.where.text() == "Runs on GPU: AMD Radeon 780M (RADV GFX1103_R1) via Vulkan, 30/30 layers"
    assert "Vulkan" not in pane.info.text()
    pane.set_model_info(_info(gpu_layers=12, note="Only 12 of 30 layers fit the 2.1 GB free on X; the rest run on the CPU."),
                        _gguf())
    assert pane.where.text() == ("Runs on GPU: AMD Radeon 780M (RADV GFX1103_R1) via Vulkan, 12/30 layers, "
                                 "the rest on CPU (AVX2)")
    assert pane.info.text().endswith("— Only 12 of 30 layers fit the 2.1 GB free on X; the rest run on the CPU.")


def test_pane_says_when_the_gpu_failed_and_the_cpu_took_over(qtbot) -> None:  # type: ignore[no-untyped-def]
    pane = ModelPane("base", "Base")
    qtbot.addWidget(pane)
    note = ("AMD Radeon 780M via Vulkan could not take this model (out of GPU memory or a driver error), "
            "so it runs on the CPU.")
    pane.set_model_info(_info(gpu_used=False, gpu_layers=0, gpu_device="", backend="CPU (AVX2)", note=note),
                        _gguf())
    assert pane.where.text() == "Runs on CPU (AVX2)"
    assert pane.info.text().endswith("— " + note)
    pane.set_model_info(None, None)
    assert pane.where.text() == ""


def test_window_shows_the_cpu_and_the_choice_reloads_both_models(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    w = make_window(settings_for())
    wait_loaded(qtbot, w)
    for pane in (w.base_pane, w.instruct_pane):
        assert pane.where.text() == f"Runs on {cpu_backend_name()}"
        assert pane.gpu_choice.currentData() == "auto" and not pane.gpu_layers.isVisibleTo(pane)
    ids = dict(w.controller.load_ids)
    # CPU only, chosen in the base pane: one setting for both panes, both models reload
    w.base_pane.gpu_choice.setCurrentIndex(w.base_pane.gpu_choice.findData("cpu"))
    w.base_pane.gpu_choice.activated.emit(w.base_pane.gpu_choice.currentIndex())
    assert (w.settings.gpu, w.settings.load_gpu_layers()) == ("cpu", 0)
    assert w.instruct_pane.gpu_choice.currentData() == "cpu"
    assert all(w.controller.load_ids[s] != ids[s] for s in ids)
    wait_loaded(qtbot, w)
    # a number of layers, chosen in the instruct pane
    w.instruct_pane.gpu_choice.setCurrentIndex(w.instruct_pane.gpu_choice.findData("layers"))
    w.instruct_pane.gpu_choice.activated.emit(w.instruct_pane.gpu_choice.currentIndex())
    assert w.instruct_pane.gpu_layers.isVisibleTo(w.instruct_pane)
    assert w.instruct_pane.gpu_layers.text() == "all" and w.settings.load_gpu_layers() == -1
    w.instruct_pane.gpu_layers.setValue(3)
    w.instruct_pane.gpu_layers.editingFinished.emit()
    assert (w.settings.gpu, w.settings.n_gpu_layers, w.settings.load_gpu_layers()) == ("layers", 3, 3)
    assert w.base_pane.gpu_layers.value() == 3 and w.base_pane.gpu_layers.isVisibleTo(w.base_pane)
    wait_loaded(qtbot, w)
    # no GPU here: the layers asked for run on the CPU, and the pane says so
    assert w.base_pane.where.text() == f"Runs on {cpu_backend_name()}"
    assert w.base_pane.info.text().endswith(
        "— There is no GPU that llama.cpp can use here, so the model runs on the CPU.")


def test_gpu_setting_survives_and_old_files_get_auto(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from desktop.core import settings as settings_mod

    assert Settings().gpu == "auto" and Settings().load_gpu_layers() == -2
    old = Settings.from_dict({"n_gpu_layers": 0})  # the old default: no choice was made
    assert (old.gpu, old.load_gpu_layers()) == ("auto", -2)
    chosen = Settings.from_dict({"n_gpu_layers": 20})  # a count someone wrote in the old file
    assert (chosen.gpu, chosen.load_gpu_layers()) == ("layers", 20)
    path = tmp_path / "settings.json"
    settings_mod.save(Settings(gpu="cpu", n_gpu_layers=5), path)
    back = settings_mod.load(path).settings
    assert (back.gpu, back.n_gpu_layers, back.load_gpu_layers()) == ("cpu", 5, 0)
    path.write_text('{"gpu": "quantum"}')
    loaded = settings_mod.load(path)
    assert loaded.settings.gpu == "auto"
    assert loaded.fixed == ("Your settings file names a place to run models that Based does not know "
                            "('quantum'), so Based uses Auto.",)
