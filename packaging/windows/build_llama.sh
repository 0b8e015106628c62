#!/usr/bin/env bash
# Cross-compile llama.cpp for 64-bit Windows on Linux and pack it into a win_amd64 wheel of
# llama-cpp-python:
#
#   packaging/windows/build_llama.sh <llama_cpp_python-X.Y.Z.tar.gz> <output folder>
#
# The llama.cpp is the one vendored in the llama-cpp-python sdist (the exact sources pip would
# compile), built with mingw-w64 GCC (posix threads) and CMake:
# - portable CPU code chosen at run time: GGML_NATIVE=OFF, GGML_BACKEND_DL=ON,
#   GGML_CPU_ALL_VARIANTS=ON, cut to the Linux build's x86-64 variants
#   (`packaging/build_llama.sh --print-cpu-variants`: sse42 sandybridge haswell alderlake skylakex
#   icelake zen4) -> one ggml-cpu-<variant>.dll each (AMX, sapphirerapids, is not among them; GCC 12
#   could not build it for Windows anyway: see below);
# - no OpenMP (ggml's own thread pool: no libgomp/winpthread DLL to ship);
# - libgcc, libstdc++ and winpthread linked statically (and not re-exported: ggml and llama
#   export every symbol on mingw, where GGML_API/LLAMA_API are not dllexport): the DLLs import
#   only Windows' own DLLs;
# - only the libraries llama-cpp-python loads (libllama, ggml, ggml-base, the CPU variants): no
#   tools, examples, tests, common library or mtmd/llava (Based does not use them);
# - unaligned AVX moves (binutils -muse-unaligned-vector-move; GCC bug 54412: Windows only
#   guarantees 16-byte stack alignment); no build-machine paths in the DLLs (-ffile-prefix-map);
# - packaging/windows/mingw_compat.h when the mingw-w64 headers lack
#   THREAD_POWER_THROTTLING_STATE (mingw-w64 10, Debian 12).
# - llama.cpp's Vulkan backend (ggml-vulkan.dll, one more dynamically loaded backend) when the
#   shared flags turn it on (`packaging/build_llama.sh --print-vulkan`; packaging/
#   llama_cmake_args.txt): it imports vulkan-1.dll, the Vulkan loader every Windows GPU driver
#   installs (never bundled; without it ggml-vulkan.dll does not load and the CPU runs the
#   models). Built against an import library made here (x86_64-w64-mingw32-dlltool, from the
#   loader functions the Vulkan headers declare for every platform) and Debian's Vulkan and
#   SPIR-V headers copied into a folder of their own; llama.cpp builds its shader generator with
#   the build machine's gcc, and glslc runs on the build machine through
#   packaging/glslc_cached.sh, whose SPIR-V cache is shared with the Linux build (SPIR-V does not
#   depend on the platform: a warm cache compiles no shader).
# Then it checks every DLL's imports and that libllama.dll exports every function llama-cpp-python
# binds, and writes llama_cpp_python-X.Y.Z-py3-none-win_amd64.whl (make_llama_wheel.py).
#
# Cached by the hash of its inputs (sdist, build flags, toolchain file, compat header, wheel
# maker, compiler version) in $BASED_BUILD_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/based-build)
# under windows/llama/<hash>/. JOBS (default 2) parallel compiles, at nice 10. A failed build keeps
# its work folder, so a rerun continues where it stopped. The last line printed is the wheel.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SDIST_TGZ="$(realpath "$1")"
OUT="$(realpath -m "$2")"
CACHE="${BASED_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/based-build}"
JOBS="${JOBS:-2}"
CC=x86_64-w64-mingw32-gcc-posix
OBJDUMP=x86_64-w64-mingw32-objdump

VULKAN="$("$HERE/../build_llama.sh" --print-vulkan)"
TOOLS=("$CC" x86_64-w64-mingw32-g++-posix "$OBJDUMP" cmake python3)
if [[ "$VULKAN" == ON ]]; then
    TOOLS+=(x86_64-w64-mingw32-dlltool glslc gcc g++)
    for need in /usr/include/vulkan/vulkan.hpp /usr/include/spirv/unified1/spirv.hpp \
                /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake; do
        [[ -f "$need" ]] || {
            echo "build_llama.sh: $need is missing; install: apt-get install libvulkan-dev spirv-headers glslc (or set BASED_LLAMA_CMAKE_ARGS=-DGGML_VULKAN=OFF)" >&2
            exit 2
        }
    done
fi
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null || {
        echo "build_llama.sh: $tool is missing; install: apt-get install cmake ninja-build python3 gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix mingw-w64-x86-64-dev" >&2
        exit 2
    }
done
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)

# mingw-w64 10 lacks THREAD_POWER_THROTTLING_STATE: use the compat header only when needed.
PROBE="$(mktemp -d)"
printf '%s\n' '#define _WIN32_WINNT 0x0A00' '#include <windows.h>' \
    'int main(void) { THREAD_POWER_THROTTLING_STATE t; t.Version = THREAD_POWER_THROTTLING_CURRENT_VERSION; return (int) t.Version; }' \
    >"$PROBE/probe.c"
C_EXTRA=""
if ! "$CC" -c "$PROBE/probe.c" -o "$PROBE/probe.o" 2>/dev/null; then
    C_EXTRA="-include @HERE@/mingw_compat.h"
fi
rm -rf "$PROBE"

VEC="-Wa,-muse-unaligned-vector-move"
# Source paths in the DLLs (assert messages) read llama.cpp/..., not this machine's folders.
VEC="$VEC -ffile-prefix-map=@SRC@=llama.cpp"
# (ggml-vulkan compiles generated sources in the build folder too)
[[ "$VULKAN" == ON ]] && VEC="$VEC -ffile-prefix-map=@BUILD@=build"
STATIC="-static -static-libgcc -static-libstdc++ -Wl,--exclude-libs,ALL"
CMAKE_FLAGS=(
    -DCMAKE_TOOLCHAIN_FILE=@HERE@/mingw-w64-x86_64.cmake
    -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_C_FLAGS=$VEC $C_EXTRA"
    "-DCMAKE_CXX_FLAGS=$VEC"
    "-DCMAKE_SHARED_LINKER_FLAGS=$STATIC"
    "-DCMAKE_MODULE_LINKER_FLAGS=$STATIC"
    -DBUILD_SHARED_LIBS=ON
    -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
    -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
)
if [[ "$VULKAN" == ON ]]; then
    CMAKE_FLAGS+=(
        -DGGML_VULKAN=ON
        -DVulkan_INCLUDE_DIR=@SDK@/include
        -DVulkan_LIBRARY=@SDK@/lib/libvulkan-1.dll.a
        -DVulkan_GLSLC_EXECUTABLE=@HERE@/../glslc_cached.sh
        -DSPIRV-Headers_DIR=@SDK@/share/cmake/SPIRV-Headers
    )
fi

# The Vulkan "SDK" for mingw-w64, made from Debian's packages: the Vulkan, video and SPIR-V
# headers (the toolchain file searches only the mingw root, and /usr/include must never reach
# the Windows compiler), SPIR-V's CMake package, and an import library for vulkan-1.dll. The
# import library lists the loader functions of Debian's libvulkan.so.1 that exist on every
# platform (the X11/Wayland/DirectFB surface functions are Linux-only); ggml-vulkan imports only
# a few of them (vkGetInstanceProcAddr and friends: Vulkan-Hpp's dynamic dispatcher), checked
# below against that list.
vulkan_sdk() {
    local sdk="$1" loader
    loader="$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')"
    [[ -n "$loader" ]] || { echo "build_llama.sh: libvulkan.so.1 is missing; install: apt-get install libvulkan1" >&2; exit 2; }
    rm -rf "$sdk"
    mkdir -p "$sdk/include" "$sdk/lib" "$sdk/share/cmake"
    cp -r /usr/include/vulkan /usr/include/vk_video /usr/include/spirv "$sdk/include/"
    cp -r /usr/share/cmake/SPIRV-Headers "$sdk/share/cmake/"
    { echo "LIBRARY vulkan-1.dll"; echo "EXPORTS"
      nm -D --defined-only "$loader" | awk '$3 ~ /^vk/ {print $3}' \
          | grep -vE '(Xlib|Xcb|Wayland|DirectFB|Screen)' | sort -u | sed 's/^/    /'
    } >"$sdk/lib/vulkan-1.def"
    x86_64-w64-mingw32-dlltool -d "$sdk/lib/vulkan-1.def" -l "$sdk/lib/libvulkan-1.dll.a" -m i386:x86-64
}

RECIPE_PATCH='        if (NOT MSVC)
            # MSVC doesn'"'"'t support AMX
            ggml_add_cpu_backend_variant(sapphirerapids'
apply_recipe_patch() {  # the one source change: sapphirerapids only when neither MSVC nor MinGW
    python3 - "$1" "$RECIPE_PATCH" <<'PY'
import sys
path, old = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
new = old.replace("if (NOT MSVC)", "if (NOT MSVC AND NOT MINGW)")
if new in text or "if (NOT MSVC AND NOT MINGW)" in text:  # patched (and maybe cut) already: a rerun
    sys.exit(0)
if text.count(old) != 1:
    sys.exit(f"build_llama.sh: {path} no longer has the sapphirerapids variant block it patches")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
PY
}

# The same x86-64 CPU variants as the Linux build (packaging/build_llama.sh, which explains the
# choice): llama.cpp's list is cut to them before CMake runs.
CPU_VARIANTS="$("$HERE/../build_llama.sh" --print-cpu-variants | tr '\n' ' ')"
X86_VARIANTS="$("$HERE/../build_llama.sh" --print-x86-variants | tr '\n' ' ')"
cut_variants() {
    python3 - "$1" "$CPU_VARIANTS" "$X86_VARIANTS" <<'PY'
import re, sys
path, keep, known = sys.argv[1], set(sys.argv[2].split()), set(sys.argv[3].split())
lines = open(path, encoding="utf-8").read().splitlines(keepends=True)
call = re.compile(r"^\s*ggml_add_cpu_backend_variant\((\w+)[\s)]")
out = [ln for ln in lines if not ((m := call.match(ln)) and m.group(1) in known - keep)]
found = {m.group(1) for ln in out if (m := call.match(ln))}
if not keep <= found:
    sys.exit(f"build_llama.sh: llama.cpp has no CPU variant named {sorted(keep - found)}")
open(path, "w", encoding="utf-8").writelines(out)
PY
}

# The cache key: the sdist, the build recipe and the compiler; not the checkout's location.
KEY="$( { sha256sum "$SDIST_TGZ" "$HERE/mingw-w64-x86_64.cmake" "$HERE/mingw_compat.h" \
            "$HERE/make_llama_wheel.py" | cut -d' ' -f1
          printf '%s\n' "${CMAKE_FLAGS[@]}" "$RECIPE_PATCH" "variants $CPU_VARIANTS"
          "$CC" --version | head -1
          dpkg-query -W mingw-w64-x86-64-dev binutils-mingw-w64-x86-64 2>/dev/null || true
          if [[ "$VULKAN" == ON ]]; then
              sha256sum "$HERE/../glslc_cached.sh" | cut -d' ' -f1
              glslc --version 2>&1 | head -2
              gcc --version | head -1
              dpkg-query -W libvulkan-dev libvulkan1 spirv-headers 2>/dev/null || true
              sed -n '/^vulkan_headers_patch()/,/^}/p' "$HERE/../build_llama.sh" | sha256sum
          fi
        } | sha256sum | cut -c1-16)"
CMAKE_FLAGS=("${CMAKE_FLAGS[@]//@HERE@/$HERE}")
DEST="$CACHE/windows/llama/$KEY"
mkdir -p "$OUT"
if compgen -G "$DEST/*.whl" >/dev/null; then
    echo "llama.cpp for Windows: cached ($DEST)" >&2
    cp "$DEST"/*.whl "$OUT/"
    ls "$OUT"/llama_cpp_python-*-win_amd64.whl | tail -1
    exit 0
fi

WORK="$CACHE/windows/llama/work-$KEY"
mkdir -p "$WORK"
echo "llama.cpp for Windows: building in $WORK (-j$JOBS)" >&2
[[ -f "$WORK/extracted" ]] || { tar -xzf "$SDIST_TGZ" -C "$WORK" && touch "$WORK/extracted"; }
SDIST="$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'llama_cpp_python-*' | head -1)"
SRC="$SDIST/vendor/llama.cpp"
test -f "$SRC/CMakeLists.txt"
CMAKE_FLAGS=("${CMAKE_FLAGS[@]//@SRC@/$SRC}")
CMAKE_FLAGS=("${CMAKE_FLAGS[@]//@BUILD@/$WORK/build}")
# No sapphirerapids (AMX) variant: GCC 12's AMX intrinsics pass the tile stride as `long`, which
# is 32 bits on Windows, and the assembler rejects the result ("(%rax,%edi,1) is not a valid
# base/index expression"); llama.cpp's MSVC builds leave AMX out too. Those CPUs load the zen4
# variant (AVX-512 VNNI/BF16). Based turns llama.cpp's AMX weight buffers off anyway.
apply_recipe_patch "$SRC/ggml/src/CMakeLists.txt"
cut_variants "$SRC/ggml/src/CMakeLists.txt"
if [[ "$VULKAN" == ON ]]; then
    "$HERE/../build_llama.sh" --patch-vulkan "$SRC/ggml/src/ggml-vulkan/ggml-vulkan.cpp"
    vulkan_sdk "$WORK/vulkan-sdk"
    CMAKE_FLAGS=("${CMAKE_FLAGS[@]//@SDK@/$WORK/vulkan-sdk}")
    # every shader compiled once, shared with the Linux build (packaging/glslc_cached.sh)
    export BASED_GLSLC="$(command -v glslc)" BASED_SPIRV_CACHE="$CACHE/spirv"
fi

nice -n 10 cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" "${CMAKE_FLAGS[@]}" \
    >"$WORK/configure.log" 2>&1 || { tail -40 "$WORK/configure.log" >&2; exit 1; }
nice -n 10 cmake --build "$WORK/build" --config Release -j "$JOBS" >"$WORK/build.log" 2>&1 \
    || { grep -E -B2 -A8 'error|Error' "$WORK/build.log" | tail -60 >&2; exit 1; }

DLLS="$WORK/dlls"
rm -rf "$DLLS"
mkdir -p "$DLLS"
find "$WORK/build/bin" -maxdepth 1 \( -name '*llama.dll' -o -name 'ggml*.dll' \) -exec cp {} "$DLLS/" \;
echo "built: $(cd "$DLLS" && echo *)" >&2

# Every DLL may import only Windows' own DLLs and each other.
ours="$(cd "$DLLS" && ls | tr 'A-Z' 'a-z')"
bad=0
for dll in "$DLLS"/*.dll; do
    while read -r imp; do
        low="$(tr 'A-Z' 'a-z' <<<"$imp")"
        grep -qxF "$low" <<<"$ours" && continue
        case "$low" in
            kernel32.dll|msvcrt.dll|advapi32.dll|user32.dll|ws2_32.dll|ntdll.dll|api-ms-win-*) ;;
            vulkan-1.dll) [[ "$(basename "$dll")" == ggml-vulkan.dll ]] || {
                echo "$(basename "$dll") imports vulkan-1.dll: only ggml-vulkan.dll may" >&2; bad=1; } ;;
            *) echo "$(basename "$dll") imports $imp, which Windows does not have" >&2; bad=1 ;;
        esac
    done < <("$OBJDUMP" -p "$dll" | sed -n 's/^\s*DLL Name: //p')
done
[[ "$bad" == 0 ]] || exit 1
if grep -l -a -F "$WORK" "$DLLS"/*.dll >&2; then
    echo "build_llama.sh: the DLLs above contain this machine's build path" >&2
    exit 1
fi
# llama.cpp names it libllama.dll (ggml drops the prefix); llama-cpp-python loads either name.
NEED=(libllama.dll ggml.dll ggml-base.dll ggml-cpu-sse42.dll ggml-cpu-haswell.dll)
[[ "$VULKAN" == ON ]] && NEED+=(ggml-vulkan.dll)
for need in "${NEED[@]}"; do
    [[ -f "$DLLS/$need" ]] || { echo "build_llama.sh: $need was not built" >&2; exit 1; }
done
if [[ "$VULKAN" == ON ]]; then  # the loader functions it imports exist in every vulkan-1.dll
    "$OBJDUMP" -p "$DLLS/ggml-vulkan.dll" \
        | awk '/DLL Name: vulkan-1.dll/{t=1; next} /DLL Name:/{t=0} t && $NF ~ /^vk/ {print $NF}' \
        | sort -u >"$WORK/vulkan-imports.txt"
    extra="$(comm -23 "$WORK/vulkan-imports.txt" <(sed -n 's/^    //p' "$WORK/vulkan-sdk/lib/vulkan-1.def" | sort -u))"
    [[ -s "$WORK/vulkan-imports.txt" && -z "$extra" ]] || {
        echo "build_llama.sh: ggml-vulkan.dll's imports from vulkan-1.dll are wrong: ${extra:-none}" >&2; exit 1; }
    echo "ggml-vulkan.dll imports $(wc -l <"$WORK/vulkan-imports.txt") functions of vulkan-1.dll: $(tr '\n' ' ' <"$WORK/vulkan-imports.txt")" >&2
fi

# llama-cpp-python binds its functions by name from libllama.dll at import: all must be exported.
"$OBJDUMP" -p "$DLLS/libllama.dll" \
    | awk '/\[Ordinal\/Name Pointer\] Table/{t=1; next} t && /^[ \t]*\[/{print $NF} t && /^$/{t=0}' \
    | sort -u >"$WORK/exports.txt"
python3 - "$SDIST/llama_cpp/llama_cpp.py" "$WORK/exports.txt" <<'PY'
import re, sys
names = set(re.findall(r'@ctypes_function\(\s*"([^"]+)"', open(sys.argv[1]).read()))
exports = set(open(sys.argv[2]).read().split())
missing = sorted(names - exports)
if not names or missing:
    sys.exit(f"libllama.dll lacks {len(missing)} of the {len(names)} functions llama-cpp-python binds: {missing[:10]}")
print(f"libllama.dll exports all {len(names)} functions llama-cpp-python binds", file=sys.stderr)
PY

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
python3 "$HERE/make_llama_wheel.py" "$SDIST" "$DLLS" "$DEST.tmp" >&2
cp "$WORK/build.log" "$DEST.tmp/build.log"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
rm -rf "$WORK"
cp "$DEST"/*.whl "$OUT/"
ls "$OUT"/llama_cpp_python-*-win_amd64.whl | tail -1
