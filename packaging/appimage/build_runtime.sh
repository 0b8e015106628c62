#!/usr/bin/env bash
# Build the AppImage type-2 runtime (packaging/appimage/runtime.c) as a static executable from
# Debian's static libraries, and print its path on stdout:
#
#   packaging/appimage/build_runtime.sh        # -> .../based-build/appimage-runtime/<hash>/runtime
#
# The result is cached outside the clone, under ${XDG_CACHE_HOME:-$HOME/.cache}/based-build/,
# keyed by the hash of its inputs (this script, runtime.c, the compiler and the versions of the
# static libraries), so a rebuild only happens when one of them changes.
#
# Build host: Debian 12 or newer (or Ubuntu 22.04+) with
#   apt-get install gcc libc6-dev libsquashfuse-dev libfuse3-dev libzstd-dev liblz4-dev liblzma-dev zlib1g-dev
# The code is compiled for the architecture's baseline (x86-64 / armv8-a), never for the build
# machine's CPU, and linked statically (glibc included), so it runs on any Linux of that
# architecture. Messages go to stderr; exit status 2 means build dependencies are missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/runtime.c"
CC="${CC:-gcc}"
PACKAGES=(gcc libc6-dev libsquashfuse-dev libfuse3-dev libzstd-dev liblz4-dev liblzma-dev zlib1g-dev)

case "$(uname -m)" in
    x86_64) ARCH_FLAGS=(-march=x86-64 -mtune=generic) ;;
    aarch64) ARCH_FLAGS=(-march=armv8-a) ;;
    *) echo "build_runtime.sh: no baseline flags known for $(uname -m)" >&2; exit 2 ;;
esac

# -- build dependencies ---------------------------------------------------------------------------
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
    done
fi
command -v "$CC" >/dev/null 2>&1 || missing+=("$CC")
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "build_runtime.sh: missing build dependencies; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 2
fi

# runtime.c uses libfuse 3's low-level API: the squashfuse library must be the FUSE 3 build
sqfs_fuse="$(sed -n 's/^#define FUSE_USE_VERSION \([0-9]*\).*/\1/p' /usr/include/squashfuse/config.h 2>/dev/null || true)"
if [[ -z "$sqfs_fuse" || "$sqfs_fuse" -lt 30 ]]; then
    echo "build_runtime.sh: this system's libsquashfuse is built for FUSE ${sqfs_fuse:-?}, not FUSE 3; build on Debian 12 or newer" >&2
    exit 2
fi

# -- cache key ------------------------------------------------------------------------------------
versions() {
    "$CC" --version | head -1
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Package} ${Version} ${Architecture}\n' "${PACKAGES[@]}" 2>/dev/null
    fi
    uname -m
}
KEY="$( { sha256sum "$SRC" "${BASH_SOURCE[0]}" | cut -d' ' -f1; versions; } | sha256sum | cut -c1-16)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/based-build/appimage-runtime/$KEY"
OUT="$CACHE/runtime"
if [[ -x "$OUT" ]]; then
    echo "$OUT"
    exit 0
fi

# -- build ----------------------------------------------------------------------------------------
mkdir -p "$CACHE"
TMP="$(mktemp "$CACHE/runtime.XXXXXX")"
trap 'rm -f "$TMP"' EXIT
echo "building the AppImage runtime ($KEY)" >&2
# LZO is left out on purpose (GPL; runtime.c refuses LZO blocks instead); libsquashfuse_ll.a holds
# the squashfuse core and its FUSE low-level operations.
nice -n 10 "$CC" -std=gnu11 -O2 "${ARCH_FLAGS[@]}" -Wall -Wextra -Wno-unused-parameter \
    -fstack-protector-strong -D_FORTIFY_SOURCE=2 -ffunction-sections -fdata-sections \
    -I/usr/include/squashfuse -DRUNTIME_VERSION="\"$KEY\"" \
    "$SRC" -o "$TMP" \
    -static -Wl,--gc-sections -Wl,-z,noexecstack -Wl,-z,relro -s \
    -lsquashfuse_ll -lfuse3 -lzstd -llz4 -llzma -lz -lpthread 2> >(grep -v -e 'statically linked applications requires at runtime' -e 'in function' >&2)

# the type-2 magic: "AI" and the type, 2, at offset 8 (e_ident's padding, ignored by the loader)
printf 'AI\002' | dd of="$TMP" bs=1 seek=8 count=3 conv=notrunc status=none
chmod 755 "$TMP"

# checks: static, and the image offset it computes for itself is its own size
if readelf -l "$TMP" 2>/dev/null | grep -q 'INTERP'; then
    echo "build_runtime.sh: the runtime came out dynamically linked" >&2
    exit 1
fi
size="$(stat -c %s "$TMP")"
offset="$("$TMP" --appimage-offset)"
if [[ "$offset" != "$size" ]]; then
    echo "build_runtime.sh: the runtime reports image offset $offset, but is $size bytes" >&2
    exit 1
fi
mv "$TMP" "$OUT"
trap - EXIT
echo "AppImage runtime: $OUT ($size bytes)" >&2
echo "$OUT"
