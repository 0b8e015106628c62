"""Regression tests, one per fault of issue 12 item 1 and 6: the file is refused with the right
sentence before llama.cpp sees it, and files that are fine still pass.

Each damaged file is written from a valid tiny model with the corpus writer (tests/gguf_corpus.py);
the fuzz test (test_gguf_fuzz.py) proves in child processes that nothing aborts.
"""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path

import pytest

from desktop.cli import main
from desktop.core.errors import GGUFError
from desktop.core.gguf_arch_tables import MAX_CONTEXT_LENGTH
from desktop.core.gguf_info import read_gguf, validate_gguf
from desktop.core.tinymodel import build_tiny_model, vocab_file
from tests.gguf_corpus import (
    ARR,
    BOOL,
    F32,
    KV,
    STR,
    U8,
    U16,
    U32,
    U64,
    Doc,
    parse,
    tiny_vocab_file,
)
from tests.gguf_fuzz_runner import engine_each_in_a_child


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("validation")
    v = tiny_vocab_file(out / "vocab.gguf", vocab_file("llama-spm"), 400)
    return build_tiny_model(out / "base.gguf", vocab_path=v, n_layer=2, n_embd=32, n_head=2,
                            n_ff=32, chat_template=None)


@pytest.fixture()
def doc(base: Path) -> Doc:
    return parse(base)


def _write(tmp_path: Path, d: Doc | bytes, name: str = "model.gguf") -> Path:
    p = tmp_path / name
    p.write_bytes(d.to_bytes() if isinstance(d, Doc) else d)
    return p


def _refused(path: Path, *words: str, container: bool = False) -> str:
    """validate_gguf refuses with one sentence naming the file and holding ``words``; with
    ``container``, ggml's reader would refuse it too, so read_gguf (inspect) does as well."""
    with pytest.raises(GGUFError) as ei:
        validate_gguf(path)
    msg = str(ei.value)
    assert msg.startswith(path.name + " "), msg
    for w in words:
        assert w in msg, msg
    assert "\n" not in msg and "b'" not in msg and "Traceback" not in msg
    if container:
        with pytest.raises(GGUFError):
            read_gguf(path)
    return msg


def test_the_base_model_passes(base: Path) -> None:
    info = validate_gguf(base)
    assert info.architecture == "llama" and info.vocab_size == 400 and info.n_tensors == 21


# -- model parameters that reached llama.cpp's asserts (exit 134) --------------------------------


@pytest.mark.parametrize(("count", "shown"), [(0, "is 0,"), (100_000, "is 100,000,"),
                                              (513, "is 513,")])
def test_block_count_out_of_range(tmp_path: Path, doc: Doc, count: int, shown: str) -> None:
    p = _write(tmp_path, doc.set("llama.block_count", U32, count))
    msg = _refused(p, "number of layers (block_count)", shown, "1 to 512")
    assert "Get another conversion of the model." in msg


def test_block_count_bounds_pass(tmp_path: Path, doc: Doc) -> None:
    for n in (1, 512):  # validation only: the tensors still describe two layers
        validate_gguf(_write(tmp_path, doc.set("llama.block_count", U32, n), f"n{n}.gguf"))


def test_experts_without_any_used(tmp_path: Path, doc: Doc) -> None:
    p = _write(tmp_path, doc.set("llama.expert_count", U32, 1000))
    _refused(p, "1,000 experts but uses none of them")
    p = _write(tmp_path, doc.set("llama.expert_count", U32, 1025), "many.gguf")
    _refused(p, "1,025 experts, more than llama.cpp's 1,024")
    p = _write(tmp_path, doc.set("llama.expert_count", U32, 8)
               .set("llama.expert_used_count", U32, 9), "more-used.gguf")
    _refused(p, "uses 9 experts per token but has 8")


def test_norm_epsilon_nan_or_negative(tmp_path: Path, doc: Doc) -> None:
    key = "llama.attention.layer_norm_rms_epsilon"
    _refused(_write(tmp_path, doc.set(key, F32, math.nan)),
             "attention.layer_norm_rms_epsilon is not a finite number")
    _refused(_write(tmp_path, doc.set(key, F32, -1e-5), "neg.gguf"),
             "normalization epsilon (attention.layer_norm_rms_epsilon) is negative")
    validate_gguf(_write(tmp_path, doc.set(key, F32, 0.0), "zero.gguf"))  # eps >= 0 holds


def test_alignment_below_what_llama_cpp_maps(tmp_path: Path, doc: Doc) -> None:
    d = doc.set("general.alignment", U32, 1)
    d.alignment = 1
    _refused(_write(tmp_path, d), "not aligned to 32 bytes", "its data alignment is 1",
             container=True)
    d = doc.set("general.alignment", U32, 64)
    d.alignment = 64
    validate_gguf(_write(tmp_path, d, "a64.gguf"))


def test_context_length_beyond_int32_or_any_model(tmp_path: Path, doc: Doc) -> None:
    p = _write(tmp_path, doc.set("llama.context_length", U32, 2**32 - 1))
    _refused(p, "context length (4,294,967,295 tokens)")
    p = _write(tmp_path, doc.set("llama.context_length", U32, MAX_CONTEXT_LENGTH + 1), "big.gguf")
    _refused(p, f"({MAX_CONTEXT_LENGTH + 1:,} tokens)")
    p = _write(tmp_path, doc.set("llama.context_length", U32, MAX_CONTEXT_LENGTH), "max.gguf")
    assert validate_gguf(p).context_length == MAX_CONTEXT_LENGTH


def test_rope_scaling_type_llama_cpp_does_not_know(tmp_path: Path, doc: Doc) -> None:
    _refused(_write(tmp_path, doc.set("llama.rope.scaling.type", STR, "dynamic")),
             "RoPE scaling type 'dynamic'")
    validate_gguf(_write(tmp_path, doc.set("llama.rope.scaling.type", STR, "yarn"), "y.gguf"))


def test_per_layer_heads_the_architecture_cannot_follow(tmp_path: Path, doc: Doc) -> None:
    p = _write(tmp_path, doc.set("llama.attention.head_count_kv", ARR, [2, 1], U32))
    _refused(p, "key-value heads changes from layer to layer")
    validate_gguf(_write(tmp_path, doc.set("llama.attention.head_count_kv", ARR, [2, 2], U32),
                         "same.gguf"))


def test_key_and_value_head_sizes_must_match(tmp_path: Path, doc: Doc) -> None:
    _refused(_write(tmp_path, doc.set("llama.attention.value_length", U32, 8)),
             "key and value head sizes differ (16 and 8)")


def test_wrong_value_types_are_named(tmp_path: Path, doc: Doc) -> None:
    p = _write(tmp_path, doc.set("llama.block_count", STR, "2"))
    _refused(p, "number of layers (llama.block_count) is stored as text instead of a 32-bit "
                "unsigned number")


# -- the tokenizer ------------------------------------------------------------------------------


def test_duplicate_tokens(tmp_path: Path, doc: Doc) -> None:
    from tests.gguf_corpus import _string_array

    tokens = _string_array(doc, "tokenizer.ggml.tokens")
    tokens[350] = tokens[349]
    p = _write(tmp_path, doc.set("tokenizer.ggml.tokens", ARR, tokens, STR))
    _refused(p, f"lists the token '{tokens[349]}' twice")


def test_spm_vocabulary_without_byte_tokens(tmp_path: Path, doc: Doc) -> None:
    from tests.gguf_corpus import _string_array

    tokens = [t if not t.startswith("<0x") else f"x{i}" for i, t in
              enumerate(_string_array(doc, "tokenizer.ggml.tokens"))]
    p = _write(tmp_path, doc.set("tokenizer.ggml.tokens", ARR, tokens, STR))
    _refused(p, "lacks", "byte tokens")


def test_no_tokenizer(tmp_path: Path, doc: Doc) -> None:
    p = _write(tmp_path, doc.set("tokenizer.ggml.model", STR, "none"))
    msg = _refused(p, "has no tokenizer")
    assert "Pick a model file with a tokenizer." in msg


def test_byte_tokens_in_a_wordpiece_vocabulary(tmp_path: Path, doc: Doc) -> None:
    _refused(_write(tmp_path, doc.set("tokenizer.ggml.model", STR, "bert")),
             "WordPiece vocabulary has byte tokens")


def test_vision_projector_and_unknown_architecture(tmp_path: Path, doc: Doc) -> None:
    _refused(_write(tmp_path, doc.copy().set("general.architecture", STR, "clip")),
             "vision projector (mmproj)", "Pick the model's main .gguf file.")
    _refused(_write(tmp_path, doc.set("general.architecture", STR, "llama9"), "x.gguf"),
             "'llama9' architecture")


# -- what ggml's own reader refuses (based inspect called these valid) ---------------------------


def test_duplicate_keys(tmp_path: Path, doc: Doc) -> None:
    doc.kvs.append(KV.of("llama.block_count", U32, 2))
    _refused(_write(tmp_path, doc), "names llama.block_count twice", container=True)


def test_nested_arrays(tmp_path: Path, doc: Doc) -> None:
    inner = struct.pack("<IQ", U8, 2) + b"\x01\x02"
    doc.kvs.append(KV(b"general.nested", ARR, struct.pack("<IQ", ARR, 1) + inner))
    _refused(_write(tmp_path, doc), "general.nested is an array of arrays", container=True)


def test_empty_key(tmp_path: Path, doc: Doc) -> None:
    doc.kvs.append(KV.of("", STR, "x"))
    _refused(_write(tmp_path, doc), f"metadata entry {len(doc.kvs)} has an empty name",
             container=True)


@pytest.mark.parametrize(("vtype", "value"), [(U64, 32), (U16, 32), (F32, 32.0), (STR, "32"),
                                              (BOOL, True)])
def test_alignment_of_the_wrong_type(tmp_path: Path, doc: Doc, vtype: int, value: object) -> None:
    p = _write(tmp_path, doc.set("general.alignment", vtype, value))
    _refused(p, "data alignment (general.alignment) is not stored as a 32-bit unsigned number",
             container=True)


def test_overlapping_and_swapped_tensor_data(tmp_path: Path, doc: Doc) -> None:
    from dataclasses import replace

    offs = doc.offsets()
    d = doc.copy()
    d.tensors[2] = replace(d.tensors[2], offset=offs[1])
    name2 = d.tensors[2].name.decode()
    _refused(_write(tmp_path, d), f"tensor {name2} does not start where its data should be",
             container=True)
    d = doc.copy()
    d.tensors[1], d.tensors[2] = (replace(d.tensors[1], offset=offs[2]),
                                  replace(d.tensors[2], offset=offs[1]))
    _refused(_write(tmp_path, d, "swapped.gguf"), "out of order, overlapping or with gaps",
             container=True)


def test_duplicate_tensor_names(tmp_path: Path, doc: Doc) -> None:
    from dataclasses import replace

    doc.tensors[2] = replace(doc.tensors[2], name=doc.tensors[1].name)
    _refused(_write(tmp_path, doc), f"two tensors named {doc.tensors[1].name.decode()}",
             container=True)


@pytest.mark.parametrize("length", [64, 1000])
def test_tensor_names_of_64_bytes_or_more(tmp_path: Path, doc: Doc, length: int) -> None:
    from dataclasses import replace

    doc.tensors[1] = replace(doc.tensors[1], name=b"x" * length)
    _refused(_write(tmp_path, doc), f"a tensor name is {length:,} bytes long (llama.cpp allows 63)",
             container=True)


def test_63_byte_tensor_name_passes_the_reader(tmp_path: Path, doc: Doc) -> None:
    from dataclasses import replace

    doc.tensors[1] = replace(doc.tensors[1], name=b"x" * 63)
    assert read_gguf(_write(tmp_path, doc)).n_tensors == 21  # llama.cpp then wants its tensor


def test_inspect_refuses_what_ggml_refuses(tmp_path: Path, doc: Doc,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    doc.kvs.append(KV.of("general.name", STR, "again"))
    p = _write(tmp_path, doc, "dup.gguf")
    assert main(["inspect", str(p)]) != 0
    err = capsys.readouterr().err
    assert "dup.gguf is damaged: its metadata names general.name twice" in err
    assert "Traceback" not in err


def test_refused_files_never_abort_a_load(tmp_path: Path, doc: Doc) -> None:
    """The listed faults, loaded through the engine in a child process: clean errors only."""
    files = {
        "layers0.gguf": doc.copy().set("llama.block_count", U32, 0),
        "experts.gguf": doc.copy().set("llama.expert_count", U32, 1000),
        "eps.gguf": doc.copy().set("llama.attention.layer_norm_rms_epsilon", F32, math.nan),
        "ctx.gguf": doc.copy().set("llama.context_length", U32, 2**32 - 1),
    }
    d = doc.copy().set("general.alignment", U32, 1)
    d.alignment = 1
    files["align1.gguf"] = d
    for name, d in files.items():
        _write(tmp_path, d, name)
    r = engine_each_in_a_child([tmp_path / n for n in files])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "ALIVE"
    assert sum(ln.startswith("ERR") for ln in lines) == len(files)


# -- files that are not GGUF models (item 6) ------------------------------------------------------


def _not_gguf(tmp_path: Path, name: str, data: bytes, *words: str) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    msg = _refused(p, f"{name} is not a GGUF model file; ", *words)
    assert "starts with" not in msg
    return msg


def test_text_renamed_gguf(tmp_path: Path) -> None:
    msg = _not_gguf(tmp_path, "notes.gguf", b"hello, these are my notes\nsecond line\n",
                    "it looks like text.")
    assert msg == ("notes.gguf is not a GGUF model file; it looks like text. "
                   "Pick a .gguf model file.")
    _not_gguf(tmp_path, "bom.gguf", "\ufeffUTF-8 text with a BOM, été".encode(),
              "it looks like text")


def test_html_error_page(tmp_path: Path) -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>"
    msg = _not_gguf(tmp_path, "model.gguf", page, "web page", "error page")
    assert msg.endswith("Download the model's .gguf file again.")
    _not_gguf(tmp_path, "page.gguf", b"\n\n  <html lang='en'><body>x</body></html>", "web page")


def test_json_error_and_git_lfs_pointer(tmp_path: Path) -> None:
    _not_gguf(tmp_path, "err.gguf", b'{"error":"Repository not found"}', "JSON", "error message")
    lfs = (b"version https://git-lfs.github.com/spec/v1\n"
           b"oid sha256:4d7b3f0e2b1a\nsize 4920733184\n")
    _not_gguf(tmp_path, "lfs.gguf", lfs, "Git LFS pointer", "Download the file itself")


def test_archives_and_other_weights(tmp_path: Path) -> None:
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.gguf", b"GGUF....")
    _not_gguf(tmp_path, "zipped.gguf", z.read_bytes(), "zip archive", "Unpack it")
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", b"\x00" * 16)
    _not_gguf(tmp_path, "pytorch.gguf", z.read_bytes(), "PyTorch checkpoint",
              "convert it with llama.cpp's conversion script")
    _not_gguf(tmp_path, "pickle.gguf", b"\x80\x04\x95\x10\x00\x00\x00", "PyTorch (pickle) file")
    header = b'{"weight":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}'
    _not_gguf(tmp_path, "st.gguf", struct.pack("<Q", len(header)) + header + b"\x00" * 8,
              "safetensors file")
    _not_gguf(tmp_path, "gz.gguf", b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip archive")
    _not_gguf(tmp_path, "old.gguf", b"tjgg\x03\x00\x00\x00" + b"\x00" * 40, "old GGML format",
              "Get a GGUF version of the model.")
    _not_gguf(tmp_path, "noise.gguf", bytes(range(200, 256)) * 4,
              "its first bytes are not those of a GGUF file")


# -- what fuzzing other architectures found (tests/gguf_arch_specs.py) ---------------------------


@pytest.fixture(scope="module")
def arch_docs(base: Path) -> dict[str, Doc]:
    from tests.gguf_arch_specs import build, load_specs

    b = parse(base)
    return {arch: build(arch, b, spec) for arch, spec in load_specs().items()}


def test_every_architecture_model_passes(tmp_path: Path, arch_docs: dict[str, Doc]) -> None:
    for arch, d in arch_docs.items():
        assert validate_gguf(_write(tmp_path, d, f"{arch}.gguf")).architecture == arch


@pytest.mark.parametrize(("ttype", "shown"), [(1, "F16"), (30, "BF16"), (8, "Q8_0")])
def test_one_dimensional_weights_must_be_f32(tmp_path: Path, doc: Doc, ttype: int,
                                             shown: str) -> None:
    from dataclasses import replace

    i = next(i for i, t in enumerate(doc.tensors) if t.name == b"blk.0.attn_norm.weight")
    raw = bytes(64 if ttype != 8 else 34)
    doc.tensors[i] = replace(doc.tensors[i], ttype=ttype, raw=raw)
    _refused(_write(tmp_path, doc), "tensor blk.0.attn_norm.weight is not stored as F32")


@pytest.mark.parametrize(("ttype", "width", "shown"), [(24, 1, "I8"), (26, 4, "I32"),
                                                       (28, 8, "F64")])
def test_weights_of_types_ggml_cannot_compute_with(tmp_path: Path, doc: Doc, ttype: int,
                                                   width: int, shown: str) -> None:
    from dataclasses import replace

    i = next(i for i, t in enumerate(doc.tensors) if t.name == b"token_embd.weight")
    t = doc.tensors[i]
    doc.tensors[i] = replace(t, ttype=ttype, raw=bytes(t.dims[0] * t.dims[1] * width))
    _refused(_write(tmp_path, doc), f"token_embd.weight is stored as {shown}, which llama.cpp "
                                    "cannot compute with")


def test_rope_dimension_zero_would_hang(tmp_path: Path, arch_docs: dict[str, Doc]) -> None:
    d = arch_docs["gemma"].copy().set("gemma.rope.dimension_count", U32, 0)
    _refused(_write(tmp_path, d), "RoPE dimension count (0) must be even, above 0 and at most "
                                  "its head size (16)")
    d = arch_docs["gemma"].copy().set("gemma.rope.dimension_count", U32, 8)  # partial RoPE is fine
    validate_gguf(_write(tmp_path, d, "partial.gguf"))


def test_sliding_window_pattern_without_sliding_window_layers(
    tmp_path: Path, arch_docs: dict[str, Doc]
) -> None:
    d = arch_docs["gemma2"].copy().set("gemma2.attention.sliding_window_pattern", U32, 1)
    _refused(_write(tmp_path, d), "leaves no layer with sliding-window attention")
    d = arch_docs["gemma2"].copy().set("gemma2.attention.sliding_window_pattern", U32, 2)
    validate_gguf(_write(tmp_path, d, "two.gguf"))


def test_sliding_window_head_sizes(tmp_path: Path, arch_docs: dict[str, Doc]) -> None:
    d = arch_docs["cohere2"].copy().set("cohere2.attention.key_length_swa", U32, 8)
    _refused(_write(tmp_path, d), "sliding-window key and value head sizes differ (8 and 16)")
    d = arch_docs["qwen2"].copy().set("qwen2.attention.key_length_swa", U32, 8)  # no SWA layers
    validate_gguf(_write(tmp_path, d, "no-swa.gguf"))


def test_phi3_layer_without_attention_weights(tmp_path: Path, arch_docs: dict[str, Doc]) -> None:
    d = arch_docs["phi3"].copy()
    d.tensors = [t for t in d.tensors if t.name != b"blk.1.attn_qkv.weight"]
    _refused(_write(tmp_path, d), "layer 1 has no attention weights")


def test_head_count_zero_and_granite_per_layer_heads(
    tmp_path: Path, doc: Doc, arch_docs: dict[str, Doc]
) -> None:
    _refused(_write(tmp_path, doc.set("llama.attention.head_count", U32, 0)),
             "number of attention heads (attention.head_count) is 0")
    d = arch_docs["granite"].copy().set("granite.attention.head_count", ARR, [2, 4], U32)
    _refused(_write(tmp_path, d, "granite.gguf"), "attention heads changes from layer to layer")
    d = arch_docs["qwen2"].copy().set("qwen2.attention.head_count", ARR, [2, 4], U32)
    validate_gguf(_write(tmp_path, d, "qwen2.gguf"))  # its graph keeps layer 0's count
