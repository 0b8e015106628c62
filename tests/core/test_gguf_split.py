"""Split GGUF models (``name-00001-of-00003.gguf``): part 1 describes and loads the whole model, a
later part, a missing or a mismatched part is one sentence naming it. Parts are written by gguf's
own writer (``split_max_tensors``), and llama.cpp really loads them."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import gguf
import numpy as np
import pytest

from desktop.cli import main
from desktop.core import gguf_split
from desktop.core.engine import Engine
from desktop.core.errors import GGUFError
from desktop.core.fit import assess_fit, assess_model_fit
from desktop.core.gguf_info import read_gguf, validate_gguf
from desktop.core.gguf_split import (
    display_name,
    group_model_files,
    model_bytes,
    model_parts,
    model_quant,
    parse_split_name,
    split_path,
)
from desktop.core.tinymodel import build_tiny_model
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams


def copy_parts(first: Path, dest: Path) -> Path:
    """Copy every part of a split model into ``dest``; part 1's new path."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in model_parts(first):
        shutil.copy(p, dest / p.name)
    return dest / first.name


def one_sentence(text: str) -> None:
    assert text and "\n" not in text and "Traceback" not in text
    assert text.rstrip().endswith(".")


# ----- names ------------------------------------------------------------------------------------


def test_keys_are_ggufs_own() -> None:
    assert gguf_split.KEY_NO == gguf.Keys.Split.LLM_KV_SPLIT_NO
    assert gguf_split.KEY_COUNT == gguf.Keys.Split.LLM_KV_SPLIT_COUNT
    assert gguf_split.KEY_TENSORS == gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT


def test_names_as_llama_cpp_writes_and_finds_them(tmp_path: Path) -> None:
    # gguf's writer and llama.cpp's llama_split_path agree on "<prefix>-%05d-of-%05d.gguf"
    w = gguf.GGUFWriter(None, "llama", split_max_tensors=1)
    for i in range(3):
        w.add_tensor(f"t{i}", np.ones(32, dtype=np.float32))
    written = [p.name for p in w.format_shard_names(tmp_path / "Model-Q4_K_M.gguf")]
    assert written == [split_path("Model-Q4_K_M", i, 3) for i in range(3)]
    sn = parse_split_name("Q4_K_M/Model-Q4_K_M-00002-of-00003.gguf")
    assert sn is not None and (sn.prefix, sn.split_no, sn.split_count) == ("Q4_K_M/Model-Q4_K_M", 1, 3)
    assert sn.first == "Q4_K_M/Model-Q4_K_M-00001-of-00003.gguf"
    for not_a_part in ("model.gguf", "m-00001-of-00001.gguf", "m-00004-of-00003.gguf",
                       "m-000001-of-00003.gguf", "m-1-of-3.gguf", "m-00001-of-00003.GGUF", "-00001-of-00002.gguf"):
        assert parse_split_name(not_a_part) is None, not_a_part
    assert display_name("Q4_K_M/Model-Q4_K_M-00001-of-00003.gguf") == "Q4_K_M/Model-Q4_K_M (3 parts)"
    assert display_name("model.Q8_0.gguf") == "model.Q8_0.gguf"
    assert model_quant("Q4_K_M/Model-00001-of-00002.gguf") == "Q4_K_M"
    assert model_quant("Model-Q8_0-00001-of-00002.gguf") == "Q8_0"


def test_listings_fold_parts_into_one_model() -> None:
    names = ["a.Q8_0.gguf", "Q4_K_M/m-Q4_K_M-00002-of-00002.gguf", "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf",
             "big-00001-of-00003.gguf", "big-00003-of-00003.gguf"]
    got = {g.name: g for g in group_model_files(names)}
    assert list(got) == ["a.Q8_0.gguf", "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", "big-00001-of-00003.gguf"]
    m = got["Q4_K_M/m-Q4_K_M-00001-of-00002.gguf"]
    assert m.files == ("Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/m-Q4_K_M-00002-of-00002.gguf")
    assert m.complete and m.split_count == 2 and m.label == "Q4_K_M/m-Q4_K_M (2 parts)"
    assert got["big-00001-of-00003.gguf"].missing == (2,)
    assert got["a.Q8_0.gguf"].files == ("a.Q8_0.gguf",) and got["a.Q8_0.gguf"].split_count == 1


# ----- the whole model --------------------------------------------------------------------------


def test_part_1_describes_the_whole_model(tiny_split: Path, tiny_unsplit: Path) -> None:
    parts = model_parts(tiny_split)
    assert len(parts) == 3 and all(p.is_file() for p in parts)
    first_alone = read_gguf(tiny_split)  # one file's header: what inspect reported before
    assert (first_alone.split_no, first_alone.split_count) == (0, 3)
    whole, single = validate_gguf(tiny_split), validate_gguf(tiny_unsplit)
    assert first_alone.parameter_count < whole.parameter_count
    assert whole.parameter_count == single.parameter_count
    assert whole.n_tensors == single.n_tensors == whole.split_tensors_count
    assert whole.file_type == single.file_type == "F16"
    assert whole.file_size == sum(p.stat().st_size for p in parts) == model_bytes(tiny_split)
    assert whole.parts == tuple(str(p) for p in parts) and whole.paths == whole.parts
    assert whole.path == str(tiny_split) and not whole.vocab_only
    assert single.parts == () and single.paths == (str(tiny_unsplit),)


def test_inspect_shows_the_whole_model(tiny_split: Path, tiny_unsplit: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tiny_split), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["parameter_count"] == validate_gguf(tiny_unsplit).parameter_count
    assert got["split_count"] == 3 and len(got["parts"]) == 3
    assert main(["inspect", str(tiny_split)]) == 0
    out = capsys.readouterr().out
    assert "in 3 parts" in out and f"{validate_gguf(tiny_unsplit).parameter_count:,} parameters" in out
    assert "Tiny-Split-F16-00003-of-00003.gguf" in out


def test_llama_cpp_loads_part_1_and_generates_like_the_whole_file(tiny_split: Path, tiny_unsplit: Path) -> None:
    req = GenerationRequest(1, "Once upon a time", SamplingParams.deterministic(max_tokens=12))
    outs = []
    for path in (tiny_split, tiny_unsplit):
        with Engine(path, LoadOptions(n_ctx=256, n_threads=1)) as e:
            assert e.gguf.n_tensors == 21
            outs.append([t.id for t in e.generate(req, threading.Event()).tokens])
    assert len(outs[0]) == 12 and outs[0] == outs[1]


# ----- later, missing and mismatched parts ------------------------------------------------------


def test_a_later_part_alone_names_its_model_and_part_1(tiny_split: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    second = model_parts(tiny_split)[1]
    with pytest.raises(GGUFError) as err:
        validate_gguf(second)
    msg = str(err.value)
    one_sentence(msg)
    assert msg.startswith("Tiny-Split-F16-00002-of-00003.gguf is part 2 of 3 of the split model Tiny-Split-F16")
    assert "Tiny-Split-F16-00001-of-00003.gguf" in msg
    assert main(["inspect", str(second)]) == 2
    assert capsys.readouterr().err.strip() == f"based: {msg}"
    with pytest.raises(GGUFError, match="open its first part"):
        Engine(second, LoadOptions(n_ctx=256))
    renamed = tmp_path / "second.gguf"
    shutil.copy(second, renamed)
    with pytest.raises(GGUFError, match=r"part 2 of 3 of a split model: open the model's first part \(its name ends in -00001-of-00003.gguf\)"):
        validate_gguf(renamed)


def test_a_missing_part_is_named(tiny_split: Path, tmp_path: Path) -> None:
    first = copy_parts(tiny_split, tmp_path / "m")
    (tmp_path / "m" / "Tiny-Split-F16-00002-of-00003.gguf").unlink()
    with pytest.raises(GGUFError) as err:
        validate_gguf(first)
    one_sentence(str(err.value))
    assert str(err.value).startswith("Part 2 of 3 of Tiny-Split-F16 is missing: Tiny-Split-F16-00002-of-00003.gguf")
    with pytest.raises(GGUFError, match="Tiny-Split-F16-00002-of-00003.gguf"):  # before llama.cpp sees it
        Engine(first, LoadOptions(n_ctx=256))


def test_part_1_renamed_cannot_find_its_parts(tiny_split: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "model.gguf"
    shutil.copy(tiny_split, renamed)
    with pytest.raises(GGUFError, match="its name does not end in -00001-of-00003.gguf"):
        validate_gguf(renamed)


def test_renamed_parts_are_caught(tiny_split: Path, tmp_path: Path) -> None:
    first = copy_parts(tiny_split, tmp_path / "m")
    p2, p3 = (tmp_path / "m" / f"Tiny-Split-F16-0000{i}-of-00003.gguf" for i in (2, 3))
    tmp = p2.with_suffix(".tmp")
    p2.rename(tmp)
    p3.rename(p2)
    tmp.rename(p3)
    with pytest.raises(GGUFError, match="is really part 3 of 3, not part 2 as its name says"):
        validate_gguf(first)


def _patch_u16(path: Path, key: str, value: int) -> None:
    """Overwrite a uint16 metadata value in place (the key is followed by its type, then the value)."""
    data = bytearray(path.read_bytes())
    at = data.index(key.encode()) + len(key)
    assert int.from_bytes(data[at:at + 4], "little") == gguf.GGUFValueType.UINT16
    data[at + 4:at + 6] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_a_part_of_another_split_count_is_named(tiny_split: Path, tmp_path: Path) -> None:
    first = copy_parts(tiny_split, tmp_path / "m")
    _patch_u16(tmp_path / "m" / "Tiny-Split-F16-00003-of-00003.gguf", "split.count", 4)
    with pytest.raises(GGUFError) as err:
        validate_gguf(first)
    one_sentence(str(err.value))
    assert str(err.value).startswith("Tiny-Split-F16-00003-of-00003.gguf belongs to a model split into 4 parts")


def test_a_part_of_another_model_is_named(tiny_split: Path, tmp_path: Path) -> None:
    first = copy_parts(tiny_split, tmp_path / "m")
    other = build_tiny_model(tmp_path / "other" / "Other.gguf", vocab="phi-3", n_layer=3, seed=9,
                             split_max_tensors=12)  # 30 tensors in 3 parts
    shutil.copy(model_parts(other)[1], tmp_path / "m" / "Tiny-Split-F16-00002-of-00003.gguf")
    with pytest.raises(GGUFError) as err:
        validate_gguf(first)
    one_sentence(str(err.value))
    assert "Tiny-Split-F16-00002-of-00003.gguf does not belong with Tiny-Split-F16-00001-of-00003.gguf" in str(err.value)
    assert "different models" in str(err.value)


def test_a_part_of_another_split_of_the_same_model_is_named(tiny_split: Path, tmp_path: Path) -> None:
    first = copy_parts(tiny_split, tmp_path / "m")  # 8 + 8 + 5 tensors
    resplit = build_tiny_model(tmp_path / "r" / "Tiny-Split-F16.gguf", vocab="phi-3", seed=5,
                               name="Tiny Split", chat_template=None, split_max_tensors=7)  # 7 + 7 + 7
    shutil.copy(model_parts(resplit)[1], tmp_path / "m" / "Tiny-Split-F16-00002-of-00003.gguf")
    with pytest.raises(GGUFError, match="both hold the tensor"):
        validate_gguf(first)


def _write_part(path: Path, *, no: int, count: int, no_type: str = "uint16") -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.kv_data[0].pop("general.architecture")
    getattr(w, f"add_{no_type}")("split.no", no)
    w.add_uint16("split.count", count)
    w.add_int32("split.tensors.count", 2)
    w.add_tensor("t0", np.ones(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_split_keys_of_the_wrong_type_are_refused_before_llama_cpp(tmp_path: Path) -> None:
    # llama.cpp reads split.no of later parts with gguf_get_val_u16, which aborts on any other type
    bad = tmp_path / "m-00002-of-00002.gguf"
    _write_part(bad, no=1, count=2, no_type="uint32")
    with pytest.raises(GGUFError) as err:
        read_gguf(bad)
    one_sentence(str(err.value))
    assert "part number (split.no) is stored as a 32-bit number instead of a 16-bit number" in str(err.value)
    _write_part(bad, no=5, count=2)
    with pytest.raises(GGUFError, match="calls itself part 6 of 2"):
        read_gguf(bad)


def test_fit_counts_every_part(tiny_split: Path) -> None:
    r = assess_model_fit(tiny_split, n_ctx=512, free_bytes=2**30)
    assert r.file_bytes == sum(p.stat().st_size for p in model_parts(tiny_split))
    assert r.need_bytes == assess_fit(r.file_bytes, n_ctx=512, free_bytes=2**30).need_bytes
    assert r.file_bytes > tiny_split.stat().st_size


def test_a_split_models_identity_covers_every_part(tiny_split: Path, tiny_llama_spm: Path, tmp_path: Path) -> None:
    from desktop.core.history import ModelRef, file_sha256, model_sha256

    assert model_sha256(tiny_llama_spm) == file_sha256(tiny_llama_spm)
    first = copy_parts(tiny_split, tmp_path / "m")
    ref = ModelRef.from_path(first)
    assert ref.file_size == model_bytes(first) and ref.sha256 == model_sha256(first)
    last = model_parts(first)[2]
    data = bytearray(last.read_bytes())
    data[-1] ^= 0xFF  # one weight byte in part 3
    last.write_bytes(bytes(data))
    assert model_sha256(first) != ref.sha256 and file_sha256(first) == file_sha256(tiny_split)
