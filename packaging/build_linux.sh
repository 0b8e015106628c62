#!/usr/bin/env bash
# Build the Linux bundle of Based from a clean checkout:
#
#   packaging/build_linux.sh            # -> dist/Based/ + dist/based_<ver>_<arch>.deb + .tar.gz
#                                       #    + dist/Based-<ver>-<arch>.AppImage
#
# 0. checks that this machine has the build tools and the system libraries Qt's display plugins
#    need (they are bundled), and names the apt packages to install in one line if not,
# 1. builds llama-cpp-python with portable CPU code (packaging/build_llama.sh: every x86-64
#    CPU variant, chosen at run time; cached by its inputs outside the checkout; never pip's
#    natively built wheel) into build/wheelhouse; BASED_LLAMA_CMAKE_ARGS (or CMAKE_ARGS) adds a
#    GPU backend, e.g. "-DGGML_VULKAN=ON",
# 2. creates a build virtualenv in build/venv (PYTHON=python3.x picks the interpreter) and
#    installs that wheel, the project and PyInstaller into it,
# 3. gathers licence notices, runs PyInstaller with packaging/based.spec -> dist/Based/,
# 4. checks that no bundled library has a "not found" dependency, that the CPU variants are
#    bundled, and runs the bundle's `based --self-test` with an empty environment,
# 5. packs an AppImage (packaging/appimage/build_appimage.sh: our runtime, needs squashfs-tools and
#    the runtime's static libraries; BASED_NO_APPIMAGE=1 skips it), a .deb (installs to /opt/based,
#    /usr/bin/based, desktop entry, icons, AppStream metainfo) and a portable .tar.gz.
#
# Options (environment): BASED_BUILD_DIR (default build/), BASED_DIST_DIR (default dist/),
# BASED_FRESH_VENV=1 (recreate the build venv), BASED_SKIP_SELFTEST=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BASED_BUILD_DIR:-$ROOT/build}"
DIST="${BASED_DIST_DIR:-$ROOT/dist}"
PY="${PYTHON:-python3}"
VENV="$BUILD/venv"
APP_ID="io.github.based.Based"
cd "$ROOT"

say() { printf '\n== %s\n' "$*"; }

# -- 0. the build machine -------------------------------------------------------------------------
# The system libraries Qt's xcb and wayland platform plugins load (PyInstaller bundles the ones
# a desktop may lack; the rest the .deb depends on). Without them here, the bundle cannot open a
# window on a machine that lacks them too.
QT_SYSTEM_LIBS="libGL.so.1 libEGL.so.1 libfontconfig.so.1 libfreetype.so.6 libdbus-1.so.3
    libglib-2.0.so.0 libxkbcommon.so.0 libxkbcommon-x11.so.0 libxcb.so.1 libX11-xcb.so.1
    libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-image.so.0 libxcb-keysyms.so.1 libxcb-randr.so.0
    libxcb-render-util.so.0 libxcb-shape.so.0 libxcb-xkb.so.1 libxcb-util.so.1
    libwayland-client.so.0 libwayland-cursor.so.0 libwayland-egl.so.1"
check_build_host() {
    local pkgs=()
    command -v "$PY" >/dev/null 2>&1 || pkgs+=(python3)
    "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
    command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1 \
        || pkgs+=(build-essential)
    command -v readelf >/dev/null 2>&1 && command -v strings >/dev/null 2>&1 || pkgs+=(binutils)
    command -v ldd >/dev/null 2>&1 || pkgs+=(libc-bin)
    if command -v "$PY" >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        pkgs+=($(PYTHONPATH="$ROOT" "$PY" - $QT_SYSTEM_LIBS <<'EOF'
import ctypes, os, sys
from desktop.ui.qt_platform import debian_package
for name in sys.argv[1:]:
    try:
        ctypes.CDLL(name, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError:
        print(debian_package(name))
EOF
))
    fi
    if [[ "${BASED_NO_APPIMAGE:-0}" != 1 ]] && command -v dpkg-query >/dev/null 2>&1; then
        # the AppImage: mksquashfs, and the static libraries our runtime is linked from
        local p
        for p in squashfs-tools libc6-dev libsquashfuse-dev libfuse3-dev libzstd-dev liblz4-dev \
                 liblzma-dev zlib1g-dev; do
            [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || pkgs+=("$p")
        done
    fi
    if ((${#pkgs[@]})); then
        echo "build_linux.sh: this machine lacks what the build needs; install it with: sudo apt install ${pkgs[*]}" >&2
        exit 2
    fi
}
check_build_host

# -- 1. llama-cpp-python with portable CPU code ---------------------------------------------------
if [[ -n "${CMAKE_ARGS:-}" && -z "${BASED_LLAMA_CMAKE_ARGS:-}" ]]; then
    export BASED_LLAMA_CMAKE_ARGS="$CMAKE_ARGS"  # a GPU backend on top of the portable CPU code
fi
unset CMAKE_ARGS
say "llama-cpp-python with portable CPU code"
WHEELHOUSE="$BUILD/wheelhouse"
LLAMA_WHEEL="$("$ROOT/packaging/build_llama.sh" --wheelhouse "$WHEELHOUSE" | tail -1)"
echo "$(basename "$LLAMA_WHEEL")"

# -- 2. build venv: the portable wheel, the project, PyInstaller ----------------------------------
if [[ "${BASED_FRESH_VENV:-0}" == 1 ]]; then rm -rf "$VENV"; fi
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating the build virtualenv ($("$PY" --version))"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip
say "installing Based and PyInstaller into the build venv"
# The portable wheel replaces whatever llama-cpp-python the venv had (pip would keep an installed
# natively built one of the same version); --only-binary keeps pip from building it again.
"$VPY" -m pip install -q --no-deps --force-reinstall "$LLAMA_WHEEL"
"$VPY" -m pip install -q --find-links "$WHEELHOUSE" --only-binary llama-cpp-python "$ROOT" "pyinstaller>=6.10"
"$VPY" - <<'EOF'
import pathlib, sys, llama_cpp
lib = pathlib.Path(llama_cpp.__file__).parent / "lib"
variants = sorted(p.name for p in lib.glob("libggml-cpu-*.so"))
if not variants or (lib / "libggml-cpu.so").exists():
    sys.exit(f"build_linux.sh: the build venv's llama-cpp-python is not the portable build ({lib})")
print("CPU variants:", " ".join(v[len("libggml-cpu-"):-3] for v in variants))
EOF
VERSION="$("$VPY" -c 'from importlib.metadata import version; print(version("based"))')"
ARCH="$(uname -m)"
echo "based $VERSION on $ARCH, $("$VPY" -c 'import llama_cpp, PySide6; print("llama-cpp-python", llama_cpp.__version__, "PySide6", PySide6.__version__)')"

# -- 3. licences + PyInstaller --------------------------------------------------------------------
say "collecting licence notices"
rm -rf "$BUILD/licenses"
"$VPY" packaging/collect_licenses.py "$BUILD/licenses"

say "running PyInstaller"
rm -rf "$DIST/Based"
BASED_LICENSES_DIR="$BUILD/licenses" "$VPY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$BUILD/pyinstaller" packaging/based.spec
BUNDLE="$DIST/Based"
test -x "$BUNDLE/based"

# -- 4. checks ------------------------------------------------------------------------------------
say "checking shared-library dependencies"
missing=0
while IFS= read -r -d '' lib; do
    # Resolve against the bundle the way the loader will (rpath $ORIGIN and the bundle's folders).
    out="$(LD_LIBRARY_PATH="$BUNDLE/_internal:$BUNDLE/_internal/llama_cpp/lib:$BUNDLE/_internal/PySide6/Qt/lib" ldd "$lib" 2>/dev/null || true)"
    if grep -q "not found" <<<"$out"; then
        echo "MISSING in $(realpath --relative-to="$BUNDLE" "$lib"):"
        grep "not found" <<<"$out" | sed 's/^/    /'
        missing=1
    fi
done < <(find "$BUNDLE/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) -print0)
[[ -e "$BUNDLE/_internal/llama_cpp/lib/libllama.so" ]] || { echo "MISSING: libllama.so"; missing=1; }
for v in $("$ROOT/packaging/build_llama.sh" --print-cpu-variants); do
    [[ -e "$BUNDLE/_internal/llama_cpp/lib/libggml-cpu-$v.so" ]] || { echo "MISSING: libggml-cpu-$v.so"; missing=1; }
done
if [[ "$("$ROOT/packaging/build_llama.sh" --print-cmake-args | sed -n 's/^-DGGML_VULKAN=//p' | tail -1)" == ON ]] \
        && [[ ! -e "$BUNDLE/_internal/llama_cpp/lib/libggml-vulkan.so" ]]; then
    echo "MISSING: libggml-vulkan.so (llama.cpp's Vulkan backend)"; missing=1
fi
if [[ -e "$BUNDLE/_internal/_internal/libvulkan.so.1" || -e "$BUNDLE/_internal/libvulkan.so.1" ]]; then
    echo "BUNDLED: libvulkan.so.1 must come from the system"; missing=1
fi
if [[ -e "$BUNDLE/_internal/llama_cpp/lib/libggml-cpu.so" ]]; then
    echo "NOT PORTABLE: the bundle holds a natively built libggml-cpu.so"; missing=1
fi
if [[ "$missing" == 1 ]]; then
    echo "some bundled libraries have unresolved dependencies (see above)" >&2
    exit 1
fi
echo "all bundled libraries resolve"

if [[ "${BASED_SKIP_SELFTEST:-0}" != 1 ]]; then
    say "bundle self-test (empty environment, no display)"
    env -i HOME="$HOME" PATH=/usr/bin:/bin "$BUNDLE/based" --self-test
fi

# -- 5. packages ----------------------------------------------------------------------------------
stage_desktop_files() {  # $1 = prefix (usr or AppDir/usr)
    local prefix="$1"
    install -Dm644 "resources/linux/$APP_ID.desktop" "$prefix/share/applications/$APP_ID.desktop"
    install -Dm644 "resources/linux/$APP_ID.metainfo.xml" "$prefix/share/metainfo/$APP_ID.metainfo.xml"
    install -Dm644 resources/icons/based.svg "$prefix/share/icons/hicolor/scalable/apps/$APP_ID.svg"
    for s in 16 32 48 64 128 256 512; do
        install -Dm644 "resources/icons/png/based-$s.png" "$prefix/share/icons/hicolor/${s}x${s}/apps/$APP_ID.png"
    done
}

say "portable tarball"
TARBALL="$DIST/Based-$VERSION-linux-$ARCH.tar.gz"
cp "resources/linux/$APP_ID.desktop" resources/icons/png/based-256.png "$BUNDLE/" 2>/dev/null || true
tar -C "$DIST" -czf "$TARBALL" Based
rm -f "$BUNDLE/$APP_ID.desktop" "$BUNDLE/based-256.png"

if [[ "${BASED_NO_APPIMAGE:-0}" != 1 ]]; then
    say "AppImage (our own runtime: packaging/appimage/)"
    packaging/appimage/build_appimage.sh "$BUNDLE" "$DIST/Based-$VERSION-$ARCH.AppImage"
fi

if command -v dpkg-deb >/dev/null; then
    say ".deb package"
    DEBARCH="$(dpkg --print-architecture)"
    PKG="$BUILD/deb/based_${VERSION}_$DEBARCH"
    rm -rf "$PKG"
    mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/doc/based"
    cp -a "$BUNDLE" "$PKG/opt/based"
    ln -s /opt/based/based "$PKG/usr/bin/based"
    stage_desktop_files "$PKG/usr"
    cp resources/licenses/THIRD_PARTY_NOTICES.md "$PKG/usr/share/doc/based/"
    printf 'Based is MIT-licensed. Bundled third-party software and its licences:\n/opt/based/_internal/licenses/\n' \
        >"$PKG/usr/share/doc/based/copyright"
    SIZE_KB="$(du -sk "$PKG/opt" | cut -f1)"
    # the newest glibc symbol version any bundled binary needs
    GLIBC="$(find "$BUNDLE" -type f \( -name '*.so*' -o -name based \) -print0 \
        | xargs -0 strings -a 2>/dev/null | grep -o '^GLIBC_2\.[0-9]*$' | sort -uV | tail -1 | cut -d_ -f2)"
    cat >"$PKG/DEBIAN/control" <<EOF
Package: based
Version: $VERSION
Section: science
Priority: optional
Architecture: $DEBARCH
Installed-Size: $SIZE_KB
Depends: libc6 (>= ${GLIBC:-2.28}), libgl1, libegl1, libxcb1, libfontconfig1, libfreetype6
Recommends: libwayland-client0, libwayland-cursor0, libwayland-egl1, libvulkan1, mesa-vulkan-drivers | vulkan-icd
Maintainer: Based developers <noreply@users.noreply.github.com>
Homepage: https://github.com/based/based
Description: base language model next to its instruct twin
 Based runs a base language model and its instruct twin side by side,
 offline with llama.cpp, and shows what post-training changed: the exact
 prompt each model receives, token probabilities and alternatives.
 Self-contained: Python, Qt and llama.cpp are bundled in /opt/based.
EOF
    find "$PKG" -type d -exec chmod 755 {} +
    dpkg-deb --root-owner-group --build "$PKG" "$DIST/based_${VERSION}_$DEBARCH.deb" >/dev/null
fi

say "done"
du -sh "$BUNDLE" | sed 's/^/bundle   /'
for f in "$DIST"/*.deb "$DIST"/*.tar.gz "$DIST"/*.AppImage; do
    [[ -e "$f" ]] && du -h "$f" | sed 's/^/package  /'
done
exit 0
