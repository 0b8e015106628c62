"""Split GGUF models (``name-00001-of-00003.gguf`` and its siblings), the way big models ship.

llama.cpp's ``gguf-split`` (and gguf's ``GGUFWriter`` with ``split_max_tensors``/``split_max_size``)
writes one model as several complete GGUF files. Each part holds its own tensor infos and data;
part 1 carries the model's metadata; every part carries ``split.no`` (uint16, 0-based),
``split.count`` (uint16) and ``split.tensors.count`` (int32: tensors over all parts). llama.cpp
loads the whole model when it is given part 1's path: it finds the other parts by name
(``llama_split_prefix`` / ``llama_split_path``: ``<prefix>-%05d-of-%05d.gguf``), refuses a later
part, reads each part's ``split.no`` with ``gguf_get_val_u16`` (ggml aborts on any other type) and
compares the tensor count (``llama_model_loader``).

- file names only (listings, no reads): :func:`parse_split_name`, :func:`split_path`,
  :func:`model_parts`, :func:`model_bytes`, :func:`parts_present`, :func:`display_name`,
  :func:`model_quant`, :func:`group_model_files`;
- headers: :func:`split_fields` (``read_gguf`` reads a part's split keys with it) and
  :func:`read_whole_model` (``validate_gguf`` on part 1: every part read, checked against part 1
  and summed into one :class:`GGUFInfo`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop.core import words
from desktop.core.errors import GGUFError
from desktop.core.types import GGUFInfo
from desktop.core.words import count

# gguf.Keys.Split (tests check that they agree)
KEY_NO = "split.no"
KEY_COUNT = "split.count"
KEY_TENSORS = "split.tensors.count"
MAX_PARTS = 0xFFFF  # split.count is a uint16

# GGUF value types (gguf.GGUFValueType)
_UINT16, _INT32 = 2, 5
_TYPE_NAMES = {
    0: "an 8-bit number", 1: "an 8-bit number", 2: "a 16-bit number", 3: "a signed 16-bit number",
    4: "a 32-bit number", 5: "a 32-bit number", 6: "a decimal number", 7: "a yes/no value",
    8: "text", 9: "a list", 10: "a 64-bit number", 11: "a 64-bit number", 12: "a decimal number",
}

_NAME_RE = re.compile(r"-(\d{5,})-of-(\d{5,})\.gguf$")


# ----- names ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitName:
    """What a part's file name says (llama.cpp's ``llama_split_prefix``)."""

    prefix: str  # the path (or repo path) before "-00001-of-00003.gguf"
    split_no: int  # 0-based, like split.no
    split_count: int

    def part(self, split_no: int) -> str:
        """The name of part ``split_no`` (0-based) of the same model."""
        return split_path(self.prefix, split_no, self.split_count)

    @property
    def first(self) -> str:
        return self.part(0)


def split_path(prefix: str, split_no: int, split_count: int) -> str:
    """llama.cpp's ``llama_split_path``: ``<prefix>-%05d-of-%05d.gguf`` (``split_no`` 0-based)."""
    return f"{prefix}-{split_no + 1:05d}-of-{split_count:05d}.gguf"


def parse_split_name(path: str | os.PathLike[str]) -> SplitName | None:
    """The part number and count in a file name or path, or None when it does not name a part of a
    split model exactly as llama.cpp writes and looks for it (``-00002-of-00003.gguf``)."""
    s = os.fspath(path)
    m = _NAME_RE.search(s)
    if m is None:
        return None
    no, count = int(m.group(1)), int(m.group(2))
    prefix = s[: m.start()]
    base = prefix.replace("\\", "/").rsplit("/", 1)[-1]
    if not base or not 2 <= count <= MAX_PARTS or not 1 <= no <= count:
        return None
    if split_path(prefix, no - 1, count) != s:  # "-000001-of-00003": llama.cpp never finds it
        return None
    return SplitName(prefix, no - 1, count)


def model_parts(path: str | os.PathLike[str]) -> list[Path]:
    """Every file of the model opened as ``path``, in order, by name only: all parts when ``path``
    is part 1 of a split model (whether or not each exists), else ``[path]``."""
    p = Path(path)
    sn = parse_split_name(p)
    if sn is None or sn.split_no != 0:
        return [p]
    return [Path(sn.part(i)) for i in range(sn.split_count)]


def parts_present(path: str | os.PathLike[str]) -> bool:
    """True when every file of the model at ``path`` (see :func:`model_parts`) is there."""
    return all(p.is_file() for p in model_parts(path))


def model_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of the model at ``path``: all parts of a split model (those present)."""
    total = 0
    for p in model_parts(path):
        try:
            total += p.stat().st_size
        except OSError:
            continue
    return total


def display_name(name: str | os.PathLike[str]) -> str:
    """A model's name for lists: ``name`` itself, or for part 1 of a split model the part before
    the number and the count: ``Q4_K_M/Model-Q4_K_M (3 parts)``."""
    s = os.fspath(name)
    sn = parse_split_name(s)
    if sn is None:
        return s
    return f"{sn.prefix} ({count(sn.split_count, 'part')})"


def model_quant(name: str) -> str:
    """The quantization in a model's file name, else in its folders (``Q4_K_M/x-00001-of-00002
    .gguf``), for a name relative to a repo or the models folder; "" when none is named."""
    from desktop.core.gguf_info import quant_from_filename

    pieces = name.replace("\\", "/").split("/")
    for piece in reversed(pieces):
        q = quant_from_filename(piece)
        if q:
            return q
    return ""


@dataclass(frozen=True)
class ModelFiles:
    """One model in a file listing: a whole file, or the parts of a split model."""

    name: str  # what to open or download: the file, or part 1 (even when part 1 is missing)
    files: tuple[str, ...]  # the files present, in part order
    split_count: int = 1
    missing: tuple[int, ...] = ()  # 1-based numbers of the parts not in the listing

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def label(self) -> str:
        return display_name(self.name)


def group_model_files(names: Iterable[str]) -> list[ModelFiles]:
    """Fold the parts of each split model in a listing (file names or paths) into one entry, in
    the order models first appear. Names that are not parts stay one entry each."""
    order: list[str] = []
    singles: set[str] = set()
    split: dict[str, tuple[SplitName, dict[int, str]]] = {}
    for n in names:
        sn = parse_split_name(n)
        key = n if sn is None else sn.first
        if key not in singles and key not in split:
            order.append(key)
        if sn is None:
            singles.add(key)
        else:
            split.setdefault(key, (sn, {}))[1][sn.split_no] = n
    out = []
    for key in order:
        if key in singles:
            out.append(ModelFiles(key, (key,)))
            continue
        sn, found = split[key]
        files = tuple(found[i] for i in sorted(found))
        missing = tuple(i + 1 for i in range(sn.split_count) if i not in found)
        out.append(ModelFiles(key, files, sn.split_count, missing))
    return out


# ----- headers ----------------------------------------------------------------------------------


def _typed(kv: dict[str, Any], types: dict[str, int], key: str, want: int, name: str, what: str) -> int:
    value, vtype = kv.get(key), types.get(key)
    if vtype != want or isinstance(value, bool) or not isinstance(value, int):
        have = _TYPE_NAMES.get(vtype if vtype is not None else -1, "an unknown type")
        raise GGUFError(
            f"{name} is damaged: its {what} ({key}) is stored as {have} instead of "
            f"{_TYPE_NAMES[want]}. Download it again."
        )
    return int(value)


def split_fields(kv: dict[str, Any], types: dict[str, int], name: str) -> tuple[int, int, int]:
    """``(split_no, split_count, split_tensors_count)`` from one file's metadata, checked the way
    llama.cpp reads them; ``(0, 1, 0)`` for a file that is not split. ``types`` maps each key to its
    GGUF value type.

    Raises :class:`GGUFError` (one sentence naming the file) for a key of the wrong type or an
    impossible value.
    """
    if KEY_COUNT not in kv:
        return 0, 1, 0
    count = _typed(kv, types, KEY_COUNT, _UINT16, name, "part count")
    if count <= 1:
        return 0, 1, 0
    if KEY_NO not in kv:
        raise GGUFError(
            f"{name} is damaged: it says it is one of {words.count(count, 'part')} of a split model but has no "
            f"part number ({KEY_NO}). Download it again."
        )
    no = _typed(kv, types, KEY_NO, _UINT16, name, "part number")
    if no >= count:
        raise GGUFError(
            f"{name} is damaged: it calls itself part {no + 1} of {count}. Download it again."
        )
    if KEY_TENSORS not in kv:
        if no == 0:  # llama.cpp requires it in part 1
            raise GGUFError(
                f"{name} is damaged: it is part 1 of a split model but does not say how many "
                f"tensors the parts hold ({KEY_TENSORS}). Download it again."
            )
        return no, count, 0
    tensors = _typed(kv, types, KEY_TENSORS, _INT32, name, "tensor count")
    if tensors <= 0:
        raise GGUFError(
            f"{name} is damaged: it says the split model holds {words.count(tensors, 'tensor')}. Download it again."
        )
    return no, count, tensors


def _later_part(p: Path, info: GGUFInfo) -> str:
    k, n = info.split_no + 1, info.split_count
    sn = parse_split_name(p)
    if sn is not None and (sn.split_no, sn.split_count) == (info.split_no, n):
        model = Path(sn.prefix).name
        return (
            f"{p.name} is part {k} of {n} of the split model {model}: open its first part, "
            f"{Path(sn.first).name}, and Based loads all {count(n, 'part')}."
        )
    return (
        f"{p.name} is part {k} of {n} of a split model: open the model's first part (its name "
        f"ends in -00001-of-{n:05d}.gguf) and Based loads all {count(n, 'part')}."
    )


def _dominant_type(counts: Counter[int]) -> str:
    import gguf

    named: Counter[str] = Counter()
    for ttype, n in counts.items():
        try:
            named[gguf.GGMLQuantizationType(ttype).name] += n
        except ValueError:
            continue
    return named.most_common(1)[0][0] if named else ""


def read_whole_model(first: GGUFInfo) -> GGUFInfo:
    """The whole model whose part 1 ``first`` describes (as :func:`read_gguf` read it): every part
    read and checked against part 1, then parameters, tensors, bytes and quantization summed over
    all parts. ``path`` stays part 1's; ``parts`` lists every part; ``file_size`` is the total.

    A file that is not split comes back unchanged. Raises :class:`GGUFError`, one sentence naming
    the file, for a later part opened alone (it names the model and its part 1), a part 1 whose
    name no longer ends in ``-00001-of-0000N.gguf``, a missing part, a damaged part, and a part that
    belongs to another model or download (part count, part number, tensor counts, a tensor held
    twice, another architecture).
    """
    from desktop.core.gguf_info import read_gguf, read_tensor_infos, size_label_from_params

    n = first.split_count
    if n <= 1:
        return first
    p = Path(first.path)
    if first.split_no != 0:
        raise GGUFError(_later_part(p, first))
    sn = parse_split_name(p)
    if sn is None or (sn.split_no, sn.split_count) != (0, n):
        raise GGUFError(
            f"{p.name} is part 1 of a model split into {count(n, 'file')}, but its name does not end in "
            f"-00001-of-{n:05d}.gguf, so the other parts cannot be found: give it back its "
            "original name."
        )
    model = Path(sn.prefix).name
    held: dict[str, int] = {}  # tensor name -> 1-based part
    n_params = n_bytes = part1_params = 0
    counts: Counter[int] = Counter()
    part1_counts: Counter[int] = Counter()
    paths: list[str] = []
    for i in range(n):
        part = Path(sn.part(i))
        if i:
            if not part.is_file():
                raise GGUFError(
                    f"Part {i + 1} of {n} of {model} is missing: {part.name} should be in the same "
                    f"folder as {p.name}; download the missing part (or the whole model) again."
                )
            _check_part(read_gguf(part), i, first)
        for tname, n_el, ttype in read_tensor_infos(part):
            if tname in held:
                if held[tname] == i + 1:
                    raise GGUFError(f"{part.name} is damaged: it holds the tensor {tname} twice.")
                raise GGUFError(
                    f"{part.name} does not belong with {p.name}: both hold the tensor {tname}, so "
                    "the parts come from different models or downloads; download the model again."
                )
            held[tname] = i + 1
            n_params += n_el
            counts[ttype] += n_el
            if i == 0:
                part1_params += n_el
                part1_counts[ttype] += n_el
        n_bytes += part.stat().st_size
        paths.append(str(part))
    if len(held) != first.split_tensors_count:
        raise GGUFError(
            f"{model} is incomplete or mixed up: its {count(n, 'part')} hold {count(len(held), 'tensor')} but part 1 "
            f"says {first.split_tensors_count}; download the model again."
        )
    params = first.parameter_count
    size_label = first.size_label
    if params == part1_params:  # counted from part 1's tensors, not stated by the file
        params = n_params
        if size_label == size_label_from_params(part1_params):
            size_label = size_label_from_params(n_params)
    file_type = first.file_type
    if not file_type or file_type == _dominant_type(part1_counts):
        file_type = _dominant_type(counts) or file_type
    return dataclasses.replace(
        first,
        file_size=n_bytes,
        parameter_count=params,
        size_label=size_label,
        file_type=file_type,
        n_tensors=len(held),
        vocab_only=not held,
        parts=tuple(paths),
    )


def _check_part(info: GGUFInfo, i: int, first: GGUFInfo) -> None:
    """Part ``i`` (0-based) against part 1, as llama.cpp would find it; one sentence if not."""
    name, first_name, n = Path(info.path).name, Path(first.path).name, first.split_count
    if info.split_count <= 1:
        raise GGUFError(
            f"{name} does not belong with {first_name}: it is a whole model file, not part "
            f"{i + 1} of {n}; download the model again."
        )
    if info.split_count != n:
        raise GGUFError(
            f"{name} belongs to a model split into {count(info.split_count, 'part')}, but {first_name} is "
            f"one of {n}: the parts come from different downloads; download the model again."
        )
    if info.split_no != i:
        raise GGUFError(
            f"{name} is really part {info.split_no + 1} of {n}, not part {i + 1} as its name says: "
            "the files were renamed; give them back their original names."
        )
    if info.split_tensors_count and info.split_tensors_count != first.split_tensors_count:
        raise GGUFError(
            f"{name} does not belong with {first_name}: one says the model has "
            f"{count(info.split_tensors_count, 'tensor')}, the other {first.split_tensors_count}, so they "
            "come from different models; download the model again."
        )
    if info.architecture and first.architecture and info.architecture != first.architecture:
        raise GGUFError(
            f"{name} does not belong with {first_name}: one is a {info.architecture} model, the "
            f"other a {first.architecture} model; download the model again."
        )
