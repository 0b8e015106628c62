#!/usr/bin/env bash
# Make a 64-bit Wine prefix that can run the Windows build of Based (build and tests only):
#
#   packaging/windows/wine_prefix.sh <prefix folder> [Qt6Core.dll]
#
# - creates the prefix (wineboot) unless it exists; Wine's Mono and Gecko installers are skipped;
# - puts a stand-in icuuc.dll (packaging/windows/wine/icuuc_stub.c, built with mingw-w64) into
#   its system32: Qt 6.11's QtCore imports ICU converters from Windows 10's system icuuc.dll,
#   which Wine 8 lacks. With a Qt6Core.dll given, checks the stub exports all it imports.
# Nothing of this is shipped: the installer and bundle never contain icuuc.dll.
# Wine runs with stdin from /dev/null and its output piped (a terminal on stdin makes wine
# try to drive it, and hangs without one).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="$(realpath -m "$1")"
QTCORE="${2:-}"
CC=x86_64-w64-mingw32-gcc-posix
OBJDUMP=x86_64-w64-mingw32-objdump
export WINEPREFIX="$PREFIX" WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="

for tool in wine wineboot wineserver "$CC" "$OBJDUMP"; do
    command -v "$tool" >/dev/null || {
        echo "wine_prefix.sh: $tool is missing; install: apt-get install wine wine64 gcc-mingw-w64-x86-64-posix" >&2
        exit 2
    }
done

if [[ ! -f "$PREFIX/system.reg" ]]; then
    mkdir -p "$PREFIX"
    wineboot -i </dev/null 2>&1 | grep -v -e 'syswow64' -e 'wine32 is missing' -e 'dpkg --add-architecture' \
        -e 'multiarch needs' -e 'apt-get install wine32' -e 'execute "dpkg' || true
    wineserver -w
fi
SYS32="$PREFIX/drive_c/windows/system32"
test -d "$SYS32" || { echo "wine_prefix.sh: $PREFIX has no system32 (wineboot failed?)" >&2; exit 1; }

STUB="$(mktemp -d)"
trap 'rm -rf "$STUB"' EXIT
"$CC" -O2 -Wall -Wextra -shared -o "$STUB/icuuc.dll" "$HERE/wine/icuuc_stub.c"
if [[ -n "$QTCORE" ]]; then
    imports="$("$OBJDUMP" -p "$QTCORE" | sed -n '/DLL Name: icuuc.dll/,/DLL Name:/p' \
        | awk 'NF==3 && $1 ~ /^[0-9a-f]+$/ {print $3}' | sort -u)"
    exports="$("$OBJDUMP" -p "$STUB/icuuc.dll" \
        | awk '/\[Ordinal\/Name Pointer\] Table/{t=1; next} t && /^[ \t]*\[/{print $NF} t && /^$/{t=0}' | sort -u)"
    lacking="$(comm -23 <(echo "$imports") <(echo "$exports"))"
    if [[ -n "$lacking" ]]; then
        echo "wine_prefix.sh: $(basename "$QTCORE") imports from icuuc.dll what the Wine stand-in lacks: $(echo $lacking)" >&2
        exit 1
    fi
fi
cp "$STUB/icuuc.dll" "$SYS32/icuuc.dll"
echo "wine prefix ready: $PREFIX"
