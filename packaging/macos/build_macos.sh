#!/usr/bin/env bash
# Build Based.app and Based-<version>-macos-arm64.dmg on Apple Silicon (macOS 13+):
#
#   packaging/macos/build_macos.sh
#
# llama-cpp-python is compiled with the Metal backend (CMAKE_ARGS="-DGGML_METAL=on", the default
# on Apple Silicon; the Metal shaders are embedded in libggml-metal). The .app comes from the same
# packaging/based.spec as the Linux bundle; the .dmg is made with hdiutil. Unsigned unless
# CODESIGN_IDENTITY is set (then the .app is signed with the hardened runtime).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BASED_BUILD_DIR:-$ROOT/build}"
DIST="${BASED_DIST_DIR:-$ROOT/dist}"
PY="${PYTHON:-python3}"
VENV="$BUILD/venv"
cd "$ROOT"

export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_METAL=on}"
export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-13.0}"

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip
echo "== installing Based (llama-cpp-python with CMAKE_ARGS=$CMAKE_ARGS)"
"$VPY" -m pip install -q --no-cache-dir --no-binary llama-cpp-python "$ROOT" "pyinstaller>=6.10"
VERSION="$("$VPY" -c 'from importlib.metadata import version; print(version("based"))')"
export BASED_VERSION="$VERSION"

echo "== licences"
rm -rf "$BUILD/licenses"
"$VPY" packaging/collect_licenses.py "$BUILD/licenses"

echo "== PyInstaller"
rm -rf "$DIST/Based" "$DIST/Based.app"
BASED_LICENSES_DIR="$BUILD/licenses" "$VPY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$BUILD/pyinstaller" packaging/based.spec
APP="$DIST/Based.app"
test -x "$APP/Contents/MacOS/based"

if [[ -n "${CODESIGN_IDENTITY:-}" ]]; then
    echo "== signing"
    codesign --deep --force --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$APP"
fi

echo "== checking linked libraries"
missing=0
while IFS= read -r -d '' lib; do
    while read -r dep; do
        case "$dep" in
            /System/*|/usr/lib/*|@rpath/*|@loader_path/*|@executable_path/*) ;;
            *) echo "external dependency in ${lib#"$APP"/}: $dep"; missing=1 ;;
        esac
    done < <(otool -L "$lib" | tail -n +2 | awk '{print $1}')
done < <(find "$APP/Contents" -type f \( -name '*.dylib' -o -name '*.so' \) -print0)
[[ "$missing" == 0 ]] || { echo "the .app links libraries outside itself" >&2; exit 1; }

echo "== self-test"
env -i HOME="$HOME" PATH=/usr/bin:/bin "$APP/Contents/MacOS/based" --self-test
env -i HOME="$HOME" PATH=/usr/bin:/bin BASED_SELFTEST_GPU=1 "$APP/Contents/MacOS/based" --self-test \
    || echo "(Metal offload self-test failed; CPU self-test passed above)"

echo "== dmg"
DMG="$DIST/Based-$VERSION-macos-$(uname -m).dmg"
STAGE="$BUILD/dmg"
rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "Based $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
du -sh "$APP" "$DMG"
