#!/usr/bin/env bash
# Run the built Linux packages on a "fresh machine": a minimal Debian root (debootstrap
# --variant=minbase: no Python, no Qt, no X11, no graphics libraries, no fonts) entered with chroot.
#
#   sudo packaging/check_fresh_machine.sh            # after packaging/build_linux.sh
#
# 1. the portable tarball, unpacked and run as is: `based --self-test` under `env -i` must get
#    as far as the window, and what it lacks must be only the graphics stack the docs list
#    (libGL/libEGL/libxcb, fontconfig/freetype, and the Vulkan loader libvulkan.so.1, which only
#    llama.cpp's Vulkan module links: without it that module does not load and the CPU runs the
#    models), nothing of Based's own (libllama, libggml, libgomp, Python, Qt);
# 2. the .deb, installed with apt (which pulls exactly the packages it declares): the installed
#    `based --self-test` must pass, with its desktop entry, icons and metainfo in place, and the
#    window must open on a real X server (Xvfb outside the root, its socket shared) through Qt's
#    xcb plugin.
#
# Needs root, debootstrap and a Debian mirror (apt's own). FRESH_ROOT_CACHE=<dir> keeps the pristine
# root between runs (default build/fresh-root); each check works on a copy of it.
# Exit status: 0 passed; 1 a package failed on the fresh root; 3 this machine cannot run the check
# (not root, no debootstrap, no mirror, chroot or mounts not permitted), nothing was judged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="${BASED_DIST_DIR:-$ROOT/dist}"
CACHE="${FRESH_ROOT_CACHE:-$ROOT/build/fresh-root}"
SUITE="${FRESH_SUITE:-bookworm}"
MIRROR="${FRESH_MIRROR:-http://deb.debian.org/debian}"
say() { printf '\n== %s\n' "$*"; }
fail() { echo "FRESH MACHINE CHECK FAILED: $*" >&2; exit 1; }
cannot() { echo "fresh machine check not run: $*" >&2; exit 3; }

[[ "$(id -u)" == 0 ]] || cannot "run as root (chroot and debootstrap need it)"
command -v debootstrap >/dev/null || cannot "debootstrap is not installed (apt-get install debootstrap)"
TARBALL="$(ls "$DIST"/Based-*-linux-*.tar.gz 2>/dev/null | head -1)"
DEB="$(ls "$DIST"/based_*.deb 2>/dev/null | head -1)"
[[ -n "$TARBALL" && -n "$DEB" ]] || fail "no tarball/.deb in $DIST: run packaging/build_linux.sh first"

if [[ ! -f "$CACHE/pristine.tar" ]]; then
    say "creating a minimal Debian $SUITE root (debootstrap --variant=minbase)"
    rm -rf "$CACHE/boot"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase "$SUITE" "$CACHE/boot" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -5 "$CACHE/debootstrap.log" >&2; cannot "debootstrap could not build the root"; }
    tar -C "$CACHE/boot" -cf "$CACHE/pristine.tar" .
    rm -rf "$CACHE/boot"
fi

WORK="$(mktemp -d)"
MOUNTS=()
XVFB_PID=""
cleanup() {
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
    [[ -n "$XVFB_PID" ]] && kill "$XVFB_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

new_root() {  # $1: folder -> a fresh copy of the pristine root with /proc mounted
    mkdir -p "$1"
    tar -C "$1" -xf "$CACHE/pristine.tar"
    cp /etc/resolv.conf "$1/etc/resolv.conf"
    mount -t proc proc "$1/proc" || cannot "mounting /proc in a chroot is not permitted here"
    MOUNTS+=("$1/proc")
}
in_root() {  # $1: root, rest: command; a clean environment, as a user's first run would have
    local r="$1"; shift
    chroot "$r" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"
}

# -- 1. the tarball, on a machine that has nothing ----------------------------------------------
say "tarball on a bare root: $(basename "$TARBALL")"
R1="$WORK/bare"
new_root "$R1"
in_root "$R1" sh -c 'command -v python3 || true; ls /usr/lib/x86_64-linux-gnu/libGL.so.1 2>/dev/null || true' \
    | grep . && fail "the bare root is not bare (python3 or libGL present)"
mkdir -p "$R1/opt"
tar -C "$R1/opt" -xzf "$TARBALL"
APPDIR="$(cd "$R1/opt" && ls -d Based* | head -1)"
out="$(in_root "$R1" sh -c "cd /opt/$APPDIR && ./based --self-test" 2>&1 || true)"
echo "$out" | tail -3 | sed "s|^|  bare root (no libGL, so the window step cannot run): |"
# Every library Based itself brings must resolve; only the desktop's graphics stack (and the
# Vulkan loader, for libggml-vulkan.so alone) may be absent.
missing="$(in_root "$R1" sh -c "cd /opt/$APPDIR/_internal && export LD_LIBRARY_PATH=\$PWD && \
    find . -name '*.so*' -type f -exec ldd {} \; 2>/dev/null | grep 'not found' | awk '{print \$1}' | sort -u")"
echo "not found on the bare root: ${missing//$'\n'/ }"
unexpected="$(echo "$missing" | grep -Ev '^lib(GL|EGL|GLX|OpenGL|xcb|wayland-(client|cursor|egl)|fontconfig|freetype|vulkan)\.so' || true)"
[[ -z "$unexpected" ]] || fail "the bundle misses libraries of its own: $unexpected"
vk_users="$(in_root "$R1" sh -c "cd /opt/$APPDIR/_internal && export LD_LIBRARY_PATH=\$PWD && \
    for f in \$(find . -name '*.so*' -type f); do ldd \$f 2>/dev/null | grep -q 'libvulkan.so.1 => not found' && echo \$f; done" || true)"
[[ -z "$vk_users" || "$vk_users" == "./llama_cpp/lib/libggml-vulkan.so" ]] || \
    fail "libraries other than llama.cpp's Vulkan module need the Vulkan loader: ${vk_users//$'\n'/ }"
echo "$out" | grep -q "self-test: FAILED at window" \
    || echo "$out" | grep -q "self-test: ok" \
    || fail "the tarball's self-test did not reach the window step: $out"
echo "ok: model, template and generation ran from the tarball with nothing installed"

# -- 2. the .deb, installed with apt --------------------------------------------------------------
say ".deb installed with apt on a bare root: $(basename "$DEB")"
R2="$WORK/deb"
new_root "$R2"
cp "$DEB" "$R2/tmp/based.deb"
before="$(in_root "$R2" dpkg-query -f '.\n' -W | wc -l)"
in_root "$R2" apt-get update -qq >"$WORK/apt.log" 2>&1 \
    || { tail -5 "$WORK/apt.log" >&2; cannot "apt in the root cannot reach the mirror"; }
in_root "$R2" sh -c 'DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends /tmp/based.deb' >"$WORK/apt.log" 2>&1 || {
    tail -5 "$WORK/apt.log" >&2
    # a download that failed is the network's fault; anything else (unmet or unknown
    # dependencies, a broken package) is the package's
    grep -qE "Failed to fetch|Temporary failure|Could not resolve|Connection (failed|timed out)" \
        "$WORK/apt.log" && cannot "apt could not download the .deb's dependencies"
    fail "apt could not install the .deb"
}
after="$(in_root "$R2" dpkg-query -f '.\n' -W | wc -l)"
echo "apt installed $((after - before)) packages (the .deb and what it declares)"
out="$(in_root "$R2" based --self-test 2>&1)" || fail "installed self-test failed: $out"
echo "$out" | grep "self-test: ok" || fail "installed self-test: $out"
echo "$out" | grep -qi "fontconfig error" && fail "fontconfig is missing its configuration: $out"
for f in /usr/share/applications/io.github.based.Based.desktop \
         /usr/share/icons/hicolor/256x256/apps/io.github.based.Based.png \
         /usr/share/icons/hicolor/scalable/apps/io.github.based.Based.svg \
         /usr/share/metainfo/io.github.based.Based.metainfo.xml; do
    [[ -f "$R2$f" ]] || fail "$f is not installed"
done
echo "ok: desktop entry, icons and metainfo installed"

if command -v Xvfb >/dev/null; then
    say "the installed app on a real X server (xcb plugin)"
    DISP=":$((90 + RANDOM % 9))"
    Xvfb "$DISP" -screen 0 1366x800x24 -nolisten tcp >/dev/null 2>&1 &
    XVFB_PID=$!
    sleep 2
    mkdir -p "$R2/tmp/.X11-unix"
    mount --bind /tmp/.X11-unix "$R2/tmp/.X11-unix"
    MOUNTS+=("$R2/tmp/.X11-unix")
    out="$(chroot "$R2" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 DISPLAY="$DISP" \
        QT_QPA_PLATFORM=xcb based --self-test 2>&1)" || fail "self-test on X11 failed: $out"
    echo "$out" | grep "self-test: ok" || fail "self-test on X11: $out"
    if [[ -n "${FRESH_SCREENSHOT:-}" ]] && command -v import >/dev/null; then
        chroot "$R2" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 DISPLAY="$DISP" \
            QT_QPA_PLATFORM=xcb based >/dev/null 2>&1 &
        sleep 6
        import -display "$DISP" -window root "$FRESH_SCREENSHOT"
        kill $! 2>/dev/null || true
        echo "screenshot: $FRESH_SCREENSHOT"
    fi
else
    echo "(Xvfb not installed: the X11 run is skipped)"
fi
say "fresh machine check passed"
