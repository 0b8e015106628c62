#!/usr/bin/env bash
# Pack a built Linux bundle into an AppImage with our own type-2 runtime:
#
#   packaging/appimage/build_appimage.sh <bundle dir> <out.AppImage>
#
# <bundle dir> is PyInstaller's one-folder output (dist/Based, holding the `based` executable).
# The AppDir gets AppRun (runs opt/based/based with the AppImage's arguments), the desktop entry
# and 256 px icon at its root (+ .DirIcon), and usr/share/{applications,metainfo,icons} as in the
# .deb. It is packed with mksquashfs (zstd, files owned by root, reproducible; SOURCE_DATE_EPOCH
# clamps every timestamp) and appended to the runtime built by build_runtime.sh.
#
# Needs: squashfs-tools (mksquashfs), and the runtime's build dependencies (see build_runtime.sh).
# Environment: APPIMAGE_RUNTIME=<file> uses a prebuilt runtime instead of building one;
# BASED_APPIMAGE_BLOCK=<size> sets the squashfs block size (default 128K).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 <bundle dir> <out.AppImage>" >&2
    exit 2
fi
BUNDLE="$(cd "$1" && pwd)"
OUT="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
APP_ID="io.github.based.Based"
RES="$ROOT/resources"

if [[ ! -x "$BUNDLE/based" ]]; then
    echo "build_appimage.sh: $BUNDLE/based is missing: build the bundle first (packaging/build_linux.sh)" >&2
    exit 2
fi
if ! command -v mksquashfs >/dev/null 2>&1; then
    echo "build_appimage.sh: mksquashfs is missing; install it with: sudo apt-get install squashfs-tools" >&2
    exit 2
fi
RUNTIME="${APPIMAGE_RUNTIME:-$("$HERE/build_runtime.sh")}"
[[ -x "$RUNTIME" ]] || { echo "build_appimage.sh: no runtime at $RUNTIME" >&2; exit 1; }

OUT_DIR="$(cd "$(dirname "$OUT")" && pwd)"
WORK="$(mktemp -d "$OUT_DIR/.appimage-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
APPDIR="$WORK/AppDir"

# -- AppDir ---------------------------------------------------------------------------------------
mkdir -p "$APPDIR/opt"
# hard links when the output is on the bundle's file system (no 270 MB copy), a copy otherwise
cp -al "$BUNDLE" "$APPDIR/opt/based" 2>/dev/null || { rm -rf "$APPDIR/opt/based"; cp -a "$BUNDLE" "$APPDIR/opt/based"; }

cat >"$APPDIR/AppRun" <<'EOF'
#!/bin/sh
# AppImage entry point: run the bundled app with the AppImage's arguments.
HERE="$(dirname "$(readlink -f "$0")")"
exec "$HERE/opt/based/based" "$@"
EOF
chmod 755 "$APPDIR/AppRun"

install -Dm644 "$RES/linux/$APP_ID.desktop" "$APPDIR/usr/share/applications/$APP_ID.desktop"
install -Dm644 "$RES/linux/$APP_ID.metainfo.xml" "$APPDIR/usr/share/metainfo/$APP_ID.metainfo.xml"
install -Dm644 "$RES/icons/based.svg" "$APPDIR/usr/share/icons/hicolor/scalable/apps/$APP_ID.svg"
for s in 16 32 48 64 128 256 512; do
    install -Dm644 "$RES/icons/png/based-$s.png" "$APPDIR/usr/share/icons/hicolor/${s}x${s}/apps/$APP_ID.png"
done
cp "$RES/linux/$APP_ID.desktop" "$APPDIR/$APP_ID.desktop"
cp "$RES/icons/png/based-256.png" "$APPDIR/$APP_ID.png"
ln -s "$APP_ID.png" "$APPDIR/.DirIcon"

# -- squashfs image + runtime ---------------------------------------------------------------------
SQFS_ARGS=(-comp zstd -Xcompression-level 19 -b "${BASED_APPIMAGE_BLOCK:-128K}" -all-root -noappend
           -no-xattrs -no-progress -quiet)
# (mksquashfs itself reads SOURCE_DATE_EPOCH: file system time, and file times clamped to it)
nice -n 10 mksquashfs "$APPDIR" "$WORK/image.sqfs" "${SQFS_ARGS[@]}" -processors "$(nproc)" >&2

cat "$RUNTIME" "$WORK/image.sqfs" >"$WORK/out.AppImage"
chmod 755 "$WORK/out.AppImage"
offset="$("$WORK/out.AppImage" --appimage-offset)"
if [[ "$offset" != "$(stat -c %s "$RUNTIME")" ]]; then
    echo "build_appimage.sh: the AppImage reports image offset $offset, expected the runtime's size" >&2
    exit 1
fi
mv -f "$WORK/out.AppImage" "$OUT"
echo "AppImage: $OUT ($(stat -c %s "$OUT") bytes; runtime $(stat -c %s "$RUNTIME") bytes)" >&2
