#!/usr/bin/env bash
# Build llama-cpp-python from its sdist with portable CPU code, cached by the hash of its inputs.
#
#   packaging/build_llama.sh [--wheelhouse DIR]   build (or reuse) the wheel; copy it into DIR;
#                                                 print the wheel's path as the last line
#   packaging/build_llama.sh --print-cmake-args   the portable CMake flags, one per line
#   packaging/build_llama.sh --print-cpu-variants the x86-64 CPU variants built, one per line
#   packaging/build_llama.sh --print-vulkan       ON when the flags build the Vulkan backend, else OFF
#   packaging/build_llama.sh --patch-vulkan FILE  apply the one source change (below) to a
#                                                 ggml-vulkan.cpp (the Windows cross-build's)
#   packaging/build_llama.sh --source DIR         unpack the verified sdist into DIR with the
#                                                 CPU-variant list applied; print the source path
#   packaging/build_llama.sh --print-sdist        download/verify the sdist; print its path
#   packaging/build_llama.sh --print-cache-dir    where builds are cached
#   packaging/build_llama.sh --print-key          the cache key of this build (its inputs' hash)
#
# The flags come from packaging/llama_cmake_args.txt (GGML_NATIVE=OFF, GGML_BACKEND_DL=ON,
# GGML_CPU_ALL_VARIANTS=ON, GGML_VULKAN=ON, ...) plus BASED_LLAMA_CMAKE_ARGS (later flags win,
# e.g. "-DGGML_VULKAN=OFF"). With Vulkan, the shaders are compiled through
# packaging/glslc_cached.sh: SPIR-V cached by content in <cache>/spirv, shared with the Windows
# build and with rebuilds that change only CPU flags.
# Of llama.cpp's 14 x86-64 CPU variants, the 7 in CPU_VARIANTS below are built (the others are
# below Based's x86-64-v2 floor, server-only, or within a few percent of a kept one): the
# source's variant list is cut to them before CMake runs, which halves the build. The wheel
# is never taken from pip's cache (which holds wheels built with -march=native): it is built
# with `pip wheel --no-cache-dir` from the sdist whose sha256 is pinned below, and kept in
# ${BASED_BUILD_CACHE:-${XDG_CACHE_HOME:-~/.cache}/based-build}/llama/<key>/, where <key> hashes
# the sdist, the flags, the compiler, cmake, glibc and this script. A second run with the same
# inputs copies the cached wheel (seconds).
#
# Environment: LLAMA_CPP_SDIST=<local .tar.gz> (verified against the pinned sha256; otherwise pip
# downloads it from PyPI), BASED_BUILD_JOBS (default 2), PYTHON (default python3),
# BASED_LLAMA_FRESH=1 (ignore the cache).
set -euo pipefail

LLAMA_CPP_VERSION="0.3.36"
LLAMA_CPP_SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

# The x86-64 CPU variants built (llama.cpp's names, ggml/src/CMakeLists.txt), each the floor of
# a family of processors: sse42 (Nehalem 2008, Bulldozer 2011: Based's floor, x86-64-v2),
# sandybridge (AVX), haswell (AVX2+FMA: most laptops since 2013), alderlake (AVX2 + AVX-VNNI:
# Intel laptops since 2021), skylakex (AVX-512), icelake (AVX-512 VBMI/VNNI: Ice/Tiger Lake
# laptops), zen4 (AVX-512 BF16: AMD Ryzen 7040 and later, Sapphire Rapids). Left out: x64
# (below the floor), ivybridge and piledriver (F16C/FMA on top of AVX: within a few percent of
# sandybridge), cannonlake, cascadelake and cooperlake (servers; skylakex runs them), and
# sapphirerapids (AMX: servers, and its AMX buffers crash llama.cpp 0.3.36, see llama_vocab.py).
CPU_VARIANTS="sse42 sandybridge haswell alderlake skylakex icelake zen4"
X86_VARIANTS="x64 sse42 sandybridge ivybridge piledriver haswell skylakex cannonlake cascadelake icelake cooperlake zen4 alderlake sapphirerapids"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
HOST_PY="${PYTHON:-python3}"
# This script's pip builds from source on purpose: no binary-only or find-links settings of a
# caller (such as CI's, which point pip at the wheel this script makes) apply to it.
unset PIP_ONLY_BINARY PIP_NO_BINARY PIP_FIND_LINKS PIP_PREFER_BINARY
JOBS="${BASED_BUILD_JOBS:-2}"
CACHE="${BASED_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/based-build}"

cmake_args() {
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^[[:space:]]*$/d' "$HERE/llama_cmake_args.txt"
    local extra
    # shellcheck disable=SC2086
    for extra in ${BASED_LLAMA_CMAKE_ARGS:-}; do printf '%s\n' "$extra"; done
}

vulkan_on() {  # the last GGML_VULKAN flag decides
    local v
    v="$(cmake_args | sed -n 's/^-DGGML_VULKAN=//p' | tail -1 | tr '[:lower:]' '[:upper:]')"
    [[ "$v" == ON || "$v" == 1 || "$v" == TRUE || "$v" == YES ]]
}

sha256() { "$HOST_PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

# One line naming the Debian packages to install when a build tool is missing.
check_host() {
    local missing=() cc="${CC:-cc}" cxx="${CXX:-c++}"
    command -v "$cc" >/dev/null 2>&1 || missing+=(gcc)
    command -v "$cxx" >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || command -v ninja >/dev/null 2>&1 || missing+=(make)
    if ! command -v "$HOST_PY" >/dev/null 2>&1; then
        missing+=(python3 python3-venv)
    elif ! "$HOST_PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if vulkan_on; then
        command -v glslc >/dev/null 2>&1 || missing+=(glslc)
        [[ -f /usr/include/vulkan/vulkan.hpp ]] || missing+=(libvulkan-dev)
        [[ -f /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ]] || \
            compgen -G "/usr/lib/*/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake" >/dev/null || \
            missing+=(spirv-headers)
    fi
    if ((${#missing[@]})); then
        echo "build_llama.sh: missing build tools; install them with: sudo apt install ${missing[*]}" >&2
        exit 2
    fi
    # pip runs from a small virtualenv of its own (Debian's python3 may have no pip)
    PY="$CACHE/venv/bin/python"
    if [[ ! -x "$PY" ]] || ! "$PY" -m pip --version >/dev/null 2>&1; then
        rm -rf "$CACHE/venv"
        "$HOST_PY" -m venv "$CACHE/venv" >&2
        "$PY" -m pip install -q --upgrade pip >&2
    fi
}

fetch_sdist() {
    local dir="$CACHE/sdist" want="llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" src
    mkdir -p "$dir"
    if [[ ! -f "$dir/$want" ]] || [[ "$(sha256 "$dir/$want")" != "$LLAMA_CPP_SDIST_SHA256" ]]; then
        rm -f "$dir/$want"
        if [[ -n "${LLAMA_CPP_SDIST:-}" ]]; then
            cp "$LLAMA_CPP_SDIST" "$dir/$want.part"
        else
            local tmp
            tmp="$(mktemp -d)"
            "$PY" -m pip download -q --no-deps --no-binary :all: \
                -d "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" >&2
            src="$(find "$tmp" -name 'llama_cpp_python-*.tar.gz' | head -1)"
            [[ -n "$src" ]] || { echo "build_llama.sh: pip did not download the llama-cpp-python sdist" >&2; exit 1; }
            mv "$src" "$dir/$want.part"
            rm -rf "$tmp"
        fi
        local got
        got="$(sha256 "$dir/$want.part")"
        if [[ "$got" != "$LLAMA_CPP_SDIST_SHA256" ]]; then
            rm -f "$dir/$want.part"
            echo "build_llama.sh: the llama-cpp-python $LLAMA_CPP_VERSION sdist has sha256 $got, expected $LLAMA_CPP_SDIST_SHA256" >&2
            exit 1
        fi
        mv "$dir/$want.part" "$dir/$want"
    fi
    printf '%s\n' "$dir/$want"
}

# Unpack the sdist into $1 and cut llama.cpp's x86-64 variant list to CPU_VARIANTS; prints the
# unpacked llama-cpp-python folder.
unpack_source() {
    local dest="$1" src cml drop="" v
    mkdir -p "$dest"
    tar -xzf "$SDIST" -C "$dest"
    src="$dest/llama_cpp_python-$LLAMA_CPP_VERSION"
    cml="$src/vendor/llama.cpp/ggml/src/CMakeLists.txt"
    for v in $X86_VARIANTS; do
        [[ " $CPU_VARIANTS " == *" $v "* ]] || drop="$drop|$v"
    done
    if [[ -n "$drop" ]]; then
        sed -E -i "/^[[:space:]]*ggml_add_cpu_backend_variant\((${drop#|})[[:space:]]*[ )]/d" "$cml"
    fi
    for v in $CPU_VARIANTS; do
        grep -qE "ggml_add_cpu_backend_variant\($v[[:space:])]" "$cml" || {
            echo "build_llama.sh: llama.cpp has no CPU variant named $v" >&2; exit 1; }
    done
    vulkan_headers_patch "$src/vendor/llama.cpp/ggml/src/ggml-vulkan/ggml-vulkan.cpp"
    printf '%s\n' "$src"
}

# llama.cpp 0.3.36's Vulkan backend always chains VK_EXT_layer_settings (used only for the
# validation layer of GGML_VULKAN_VALIDATE builds) into vkCreateInstance; the Vulkan headers of
# Debian 12 and Ubuntu 22.04 (1.3.239 / 1.3.204) predate that extension. The one source change:
# that block only where the headers have it.
vulkan_headers_patch() {
    "$HOST_PY" - "$1" <<'PY'
import sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
start = "    VkBool32 enable_best_practice = layer_settings;\n"
end = "    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, layers, extensions, &layer_setting_info);\n"
if "#ifdef VK_EXT_layer_settings /* Based */" in text:
    sys.exit(0)
if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
    sys.exit(f"build_llama.sh: {path} no longer has the layer-settings block it patches")
a, b = text.index(start), text.index(end) + len(end)
block = text[a:b]
new = ("#ifdef VK_EXT_layer_settings /* Based */\n" + block + "#else\n"
       "    GGML_UNUSED(layer_settings);\n"
       "    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, layers, extensions);\n"
       "#endif\n")
open(path, "w", encoding="utf-8").write(text[:a] + new + text[b:])
PY
}

cache_key() {
    {
        echo "sdist $LLAMA_CPP_SDIST_SHA256"
        echo "variants $CPU_VARIANTS"
        cmake_args
        echo "cc $("${CC:-cc}" --version 2>&1 | head -1)"
        echo "cxx $("${CXX:-c++}" --version 2>&1 | head -1)"
        echo "cmake $(cmake --version 2>/dev/null | head -1 || echo none)"
        echo "libc $(ldd --version 2>&1 | head -1 || true)"
        echo "arch $(uname -m)"
        echo "script $(sha256 "${BASH_SOURCE[0]}")"
        if vulkan_on; then
            echo "glslc $(glslc --version 2>&1 | head -2 | tr '\n' ' ')"
            echo "glslc-cache $(sha256 "$HERE/glslc_cached.sh")"
            echo "vulkan-headers $(grep -m1 'define VK_HEADER_VERSION ' /usr/include/vulkan/vulkan_core.h 2>/dev/null)"
            echo "spirv-headers $(dpkg-query -W -f='${Version}' spirv-headers 2>/dev/null || true)"
        fi
    } | "$HOST_PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:20])'
}

WHEELHOUSE=""
case "${1:-}" in
    --print-cmake-args) cmake_args; exit 0 ;;
    --print-cpu-variants) printf '%s\n' $CPU_VARIANTS; exit 0 ;;
    --print-x86-variants) printf '%s\n' $X86_VARIANTS; exit 0 ;;  # all of llama.cpp's, for the cut
    --print-vulkan) if vulkan_on; then echo ON; else echo OFF; fi; exit 0 ;;  # for the Windows build
    --patch-vulkan) vulkan_headers_patch "${2:?--patch-vulkan needs ggml-vulkan.cpp}"; exit 0 ;;
    --source) check_host; SDIST="$(fetch_sdist)"; unpack_source "${2:?--source needs a folder}"; exit 0 ;;
    --print-cache-dir) echo "$CACHE"; exit 0 ;;
    --print-sdist) check_host; fetch_sdist; exit 0 ;;
    --print-key) check_host; cache_key; exit 0 ;;
    --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a folder}" ;;
    "") ;;
    *) echo "usage: $0 [--wheelhouse DIR | --print-cmake-args | --print-cpu-variants | --print-x86-variants | --print-vulkan | --patch-vulkan FILE | --source DIR | --print-sdist | --print-cache-dir | --print-key]" >&2; exit 2 ;;
esac

check_host
SDIST="$(fetch_sdist)"
KEY="$(cache_key)"
OUT="$CACHE/llama/$KEY"
if [[ "${BASED_LLAMA_FRESH:-0}" == 1 ]]; then rm -rf "$OUT"; fi

wheel_in() {
    [[ -d "$1" ]] || return 0
    find "$1" -maxdepth 1 -name "llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" | head -1
}

WHEEL="$(wheel_in "$OUT")"
if [[ -n "$WHEEL" ]]; then
    echo "build_llama.sh: cached portable llama-cpp-python $LLAMA_CPP_VERSION ($KEY)" >&2
else
    echo "build_llama.sh: building llama-cpp-python $LLAMA_CPP_VERSION from its sdist with portable CPU code ($KEY, -j$JOBS: about 12 CPU-minutes)" >&2
    mkdir -p "$CACHE/llama"
    WORK="$(mktemp -d "$CACHE/llama/.build-XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    ARGS="$(cmake_args | tr '\n' ' ')"
    if vulkan_on; then  # every shader compiled once (packaging/glslc_cached.sh)
        ARGS="$ARGS -DVulkan_GLSLC_EXECUTABLE=$HERE/glslc_cached.sh"
        export BASED_GLSLC="$(command -v glslc)" BASED_SPIRV_CACHE="$CACHE/spirv"
    fi
    start=$(date +%s)
    SRC="$(unpack_source "$WORK/src")"
    if ! CMAKE_ARGS="$ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" FORCE_CMAKE=1 \
        nice -n 10 "$PY" -m pip wheel --no-deps --no-cache-dir -w "$WORK" "$SRC" >"$WORK/build.log" 2>&1; then
        tail -40 "$WORK/build.log" >&2
        echo "build_llama.sh: the llama-cpp-python build failed (log above)" >&2
        exit 1
    fi
    secs=$(( $(date +%s) - start ))
    WHEEL="$(wheel_in "$WORK")"
    [[ -n "$WHEEL" ]] || { echo "build_llama.sh: pip wheel produced no wheel" >&2; exit 1; }
    # The wheel must hold the CPU variants and no natively built CPU backend.
    VULKAN=0
    if vulkan_on; then VULKAN=1; fi
    if ! "$HOST_PY" - "$WHEEL" "$CPU_VARIANTS" "$VULKAN" <<'EOF'
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
vulkan = [n for n in names if re.search(r"llama_cpp/lib/(lib)?ggml-vulkan\.(so|dll)$", n)]
if bool(vulkan) != (sys.argv[3] == "1"):
    sys.exit(f"build_llama.sh: the wheel's Vulkan backend is {vulkan or 'missing'}, expected it {'in' if sys.argv[3] == '1' else 'out'}")
found = sorted(m.group(2) for n in names
               if (m := re.search(r"llama_cpp/lib/(lib)?ggml-cpu-([\w.]+)\.(so|dll)$", n)))
plain = [n for n in names if re.search(r"llama_cpp/lib/(lib)?ggml-cpu\.(so|dll)", n)]
if found != sorted(sys.argv[2].split()) or plain:
    sys.exit(f"build_llama.sh: the wheel is not portable: CPU variants {found}, plain CPU backend {plain}")
EOF
    then exit 1; fi
    rm -rf "$WORK/src"
    {
        echo "llama-cpp-python $LLAMA_CPP_VERSION, key $KEY"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $secs s with -j$JOBS on $(nproc) cores"
        echo "CMAKE_ARGS=$ARGS"
    } >"$WORK/build-info.txt"
    rm -rf "$OUT"
    mv "$WORK" "$OUT"
    trap - EXIT
    WHEEL="$(wheel_in "$OUT")"
    echo "build_llama.sh: built in $secs s" >&2
fi

if [[ -n "$WHEELHOUSE" ]]; then
    mkdir -p "$WHEELHOUSE"
    rm -f "$WHEELHOUSE"/llama_cpp_python-*.whl
    cp "$WHEEL" "$WHEELHOUSE/"
    WHEEL="$(cd "$WHEELHOUSE" && pwd)/$(basename "$WHEEL")"
fi
printf '%s\n' "$WHEEL"
