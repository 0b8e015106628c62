"""Gather the licence texts of everything a bundle carries into one folder.

    python packaging/collect_licenses.py OUT_DIR

Run it with the build environment's interpreter (the one PyInstaller bundles). It copies
resources/licenses/* (Qt/LGPL, llama.cpp, the summary), the interpreter's own Python licence, and
the licence files of `based` and every distribution it needs at runtime, found by walking the
installed metadata (importlib.metadata) from `based`'s requirements. Build-only tools such as
PyInstaller are not runtime requirements and so are not listed. It also writes
BUNDLED_VERSIONS.md with each distribution's version and declared licence.
"""

from __future__ import annotations

import re
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "resources" / "licenses"
ROOT_DIST = "based"
LICENSE_NAME = re.compile(r"(^|/)(licen[cs]e|copying|notice|authors)[^/]*$", re.IGNORECASE)


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str | None:
    """The distribution name of a requirement whose marker applies here (extras are skipped)."""
    head, _, marker = req.partition(";")
    if "extra" in marker:
        return None
    if marker.strip():
        try:
            from packaging.markers import Marker

            if not Marker(marker.strip()).evaluate():
                return None
        except Exception:
            pass
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", head)
    return m.group(1) if m else None


def runtime_distributions(root: str = ROOT_DIST) -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = _canon(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for req in dist.requires or []:
            dep = _req_name(req)
            if dep:
                todo.append(dep)
    return sorted(seen.values(), key=lambda d: _canon(d.metadata["Name"]))


def _licence_of(dist: metadata.Distribution) -> str:
    md = dist.metadata

    def first(key: str) -> str:
        values = md.get_all(key) or []
        return str(values[0]).strip() if values else ""

    expr = first("License-Expression")
    if expr:
        return expr
    lic = first("License")
    if lic and len(lic) < 80 and "\n" not in lic:
        return lic
    classifiers = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or []
                   if c.startswith("License ::")]
    return ", ".join(classifiers) or "see files"


def _python_licence() -> Path | None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for cand in (stdlib / "LICENSE.txt", Path(sys.base_prefix) / "LICENSE.txt",
                 Path(sys.base_prefix) / "LICENSE"):
        if cand.is_file():
            return cand
    return None


def collect(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(STATIC.iterdir()):
        if f.is_file():
            shutil.copyfile(f, out / f.name)
    py = _python_licence()
    if py is not None:
        shutil.copyfile(py, out / "Python-LICENSE.txt")
    rows = [f"| Python | {sys.version.split()[0]} | PSF-2.0 |"]
    missing: list[str] = []
    for dist in runtime_distributions():
        name = dist.metadata["Name"]
        key = _canon(name).replace("-", "_")
        dest = out / "dist" / key
        copied = 0
        for rec in dist.files or []:
            if LICENSE_NAME.search(str(rec)) and ".dist-info" in str(rec):
                src = Path(str(dist.locate_file(rec)))
                if src.is_file():
                    rel = str(rec).split(".dist-info/", 1)[1]
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, target)
                    copied += 1
        if not copied:
            missing.append(name)
            dest.mkdir(parents=True, exist_ok=True)
            (dest / "LICENSE-METADATA.txt").write_text(
                f"{name} {dist.version}\nDeclared licence: {_licence_of(dist)}\n"
                f"(no licence file in its installed metadata)\n", encoding="utf-8")
        rows.append(f"| {name} | {dist.version} | {_licence_of(dist)} |")
    (out / "BUNDLED_VERSIONS.md").write_text(
        "# Versions in this bundle\n\n| Distribution | Version | Licence |\n|---|---|---|\n"
        + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"licences: {len(rows) - 1} distributions + Python into {out.name}/"
          + (f" (metadata only: {', '.join(missing)})" if missing else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: collect_licenses.py OUT_DIR", file=sys.stderr)
        return 2
    return collect(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
