#!/usr/bin/env bash
# glslc behind a content cache, for llama.cpp's Vulkan shaders (about a thousand glslc runs per
# build). SPIR-V is the same on every platform, so the Linux build and the Windows cross-build
# (and any rebuild with other CPU flags) compile each shader once:
#
#   cmake ... -DVulkan_GLSLC_EXECUTABLE=packaging/glslc_cached.sh
#   BASED_GLSLC=<the real glslc>  BASED_SPIRV_CACHE=<folder>   (both set by build_llama.sh)
#
# The key is the hash of glslc's version, every option (defines, target, -O) and the preprocessed
# source (`glslc -E`: every #include resolved, the source folder's path taken out), so a changed
# shader or include is a new key. The dependency file llama.cpp asks for (-MD -MF) is kept with
# the output and written back with this build's paths. Anything else (no -o, output to stdout
# as in CMake's feature tests, a failing preprocess) runs the real glslc unchanged.
set -uo pipefail
REAL="${BASED_GLSLC:-glslc}"
CACHE="${BASED_SPIRV_CACHE:-}"
[[ -n "$CACHE" ]] || exec "$REAL" "$@"

out="" dep="" src="" prev="" opts=()
for a in "$@"; do
    case "$prev" in
        -o) out="$a"; prev=""; continue ;;
        -MF) dep="$a"; prev=""; continue ;;
    esac
    case "$a" in
        -o | -MF) prev="$a" ;;
        -MD) ;;
        -*) opts+=("$a") ;;
        *) src="$a" ;;
    esac
done
if [[ -z "$out" || "$out" == "-" || -z "$src" || ! -f "$src" ]]; then
    exec "$REAL" "$@"
fi
srcdir="$(cd "$(dirname "$src")" && pwd)"
pre="$("$REAL" -E "${opts[@]}" "$src" 2>/dev/null)" || exec "$REAL" "$@"
key="$({ "$REAL" --version 2>&1 | head -1
         printf '%s\n' "${opts[@]}"
         printf '%s' "$pre" | sed -e "s|$srcdir/||g" -e "s|$(dirname "$src")/||g"
       } | sha256sum | cut -c1-40)"
entry="$CACHE/${key:0:2}/$key"

if [[ -f "$entry.spv" && ( -z "$dep" || -f "$entry.d" ) ]]; then
    cp "$entry.spv" "$out.tmp.$$" && mv -f "$out.tmp.$$" "$out" || exec "$REAL" "$@"
    if [[ -n "$dep" ]]; then
        sed -e "s|@OUT@|$out|g" -e "s|@SRCDIR@|$srcdir|g" "$entry.d" >"$dep"
    fi
    exit 0
fi

"$REAL" "$@" || exit $?
mkdir -p "$CACHE/${key:0:2}"
tmp="$entry.tmp.$$"
cp "$out" "$tmp.spv"
if [[ -n "$dep" && -f "$dep" ]]; then
    sed -e "s|$out|@OUT@|g" -e "s|$srcdir|@SRCDIR@|g" "$dep" >"$tmp.d" && mv -f "$tmp.d" "$entry.d"
fi
mv -f "$tmp.spv" "$entry.spv"
exit 0
