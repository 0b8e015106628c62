"""Pack llama-cpp-python's Python package and cross-compiled llama.cpp DLLs into a Windows wheel.

    python make_llama_wheel.py <sdist folder> <folder with the DLLs> <output folder>

Writes ``llama_cpp_python-<version>-py3-none-win_amd64.whl`` holding ``llama_cpp/`` from the
sdist (its server subpackage included, as in the wheel pip would build) with the DLLs in
``llama_cpp/lib/``, and the metadata (name, version, requirements) taken from the sdist's
PKG-INFO and pyproject.toml. The tag is py3-none: the package has no Python extension modules,
only ctypes-loaded DLLs. Standard library only (runs with the build host's python3).
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

import tomllib

TAG = "py3-none-win_amd64"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _metadata(sdist: Path) -> tuple[str, str, str]:
    """(distribution name, version, METADATA text) from the sdist's PKG-INFO and pyproject."""
    pkg_info = (sdist / "PKG-INFO").read_text(encoding="utf-8")
    version = re.search(r"^Version: (.+)$", pkg_info, re.M)
    if not version:
        raise SystemExit(f"no Version in {sdist / 'PKG-INFO'}")
    project = tomllib.loads((sdist / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = project["name"].replace("-", "_")
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version.group(1).strip()}",
        f"Summary: {project.get('description', '')}",
        f"License: {project.get('license', {}).get('text', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3.8')}",
    ]
    lines += [f"Requires-Dist: {req}" for req in project.get("dependencies", [])]
    return name, version.group(1).strip(), "\n".join(lines) + "\n"


def make_wheel(sdist: Path, dll_dir: Path, out_dir: Path) -> Path:
    name, version, metadata = _metadata(sdist)
    dlls = sorted(dll_dir.glob("*.dll"))
    if not dlls:
        raise SystemExit(f"no DLLs in {dll_dir}")
    files: list[tuple[str, bytes]] = []
    pkg = sdist / "llama_cpp"
    for path in sorted(pkg.rglob("*")):
        rel = path.relative_to(sdist).as_posix()
        if path.is_file() and "__pycache__" not in rel and not rel.startswith("llama_cpp/lib/"):
            files.append((rel, path.read_bytes()))
    files += [(f"llama_cpp/lib/{dll.name}", dll.read_bytes()) for dll in dlls]
    info = f"{name}-{version}.dist-info"
    license_file = sdist / "LICENSE.md"
    if license_file.is_file():
        files.append((f"{info}/licenses/LICENSE.md", license_file.read_bytes()))
    files.append((f"{info}/METADATA", metadata.encode()))
    wheel = f"Wheel-Version: 1.0\nGenerator: based make_llama_wheel\nRoot-Is-Purelib: false\nTag: {TAG}\n"
    files.append((f"{info}/WHEEL", wheel.encode()))
    files.append((f"{info}/top_level.txt", b"llama_cpp\n"))
    record = [_record_line(n, d) for n, d in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}-{version}-{TAG}.whl"
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files:
            zi = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    tmp.replace(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    print(make_wheel(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
