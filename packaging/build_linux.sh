#!/usr/bin/env bash
# Build the Linux bundle of Based from a clean checkout:
#
#   packaging/build_linux.sh            # -> dist/Based/ + dist/based_<ver>_<arch>.deb + .tar.gz
#                                       #    + dist/Based-<ver>-<arch>.AppImage
#
# 1. creates a build virtualenv in build/venv (PYTHON=python3.x picks the interpreter),
# 2. pip installs the project and PyInstaller into it (llama-cpp-python comes from pip's wheel
#    cache when it was built before; CMAKE_ARGS selects a GPU backend, see docs/packaging.md),
# 3. gathers licence notices, runs PyInstaller with packaging/based.spec -> dist/Based/,
# 4. checks that no bundled library has a "not found" dependency and runs the bundle's
#    `based --self-test` with an empty environment,
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

# -- 1. build venv --------------------------------------------------------------------------------
if [[ "${BASED_FRESH_VENV:-0}" == 1 ]]; then rm -rf "$VENV"; fi
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating the build virtualenv ($("$PY" --version))"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip

# -- 2. project + pyinstaller ---------------------------------------------------------------------
say "installing Based and PyInstaller into the build venv"
PIP_ARGS=(-q)
if [[ -n "${CMAKE_ARGS:-}" ]]; then
    # pip's wheel cache does not key on CMAKE_ARGS: build llama-cpp-python afresh for a backend.
    echo "CMAKE_ARGS=$CMAKE_ARGS: building llama-cpp-python from source"
    PIP_ARGS+=(--no-cache-dir --no-binary llama-cpp-python)
fi
"$VPY" -m pip install "${PIP_ARGS[@]}" "$ROOT" "pyinstaller>=6.10"
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
for lib in "$BUNDLE"/_internal/llama_cpp/lib/libllama.so "$BUNDLE"/_internal/llama_cpp/lib/libggml-cpu.so; do
    [[ -e "$lib" ]] || { echo "MISSING: ${lib#"$BUNDLE"/}"; missing=1; }
done
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
Recommends: libwayland-client0, libwayland-cursor0, libwayland-egl1
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
