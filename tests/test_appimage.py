"""The AppImage: our type-2 runtime (packaging/appimage/runtime.c) and build_appimage.sh.

The default run builds the runtime (cached by input hash), packs a small stand-in bundle whose
`based` is a shell script reporting how it was started, and checks extraction, extract-and-run,
the standard options and a plain run (a FUSE mount where this user can mount, else the fallback).

Marked `appimage` (root only; `pytest -m appimage tests/test_appimage.py`): the same AppImage run
as root and as an unprivileged user, each in its own mount namespace with a /dev made for the case,
with FUSE available, without /dev/fuse, without permission to mount, without fusermount3, and
with only FUSE 2's fusermount. Marked `bundle`: the real AppImage from packaging/build_linux.sh
runs its --self-test through a FUSE mount and through extract-and-run.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AI = ROOT / "packaging" / "appimage"
APP_ID = "io.github.based.Based"
NOBODY = 65534

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "aarch64"),
    reason="the AppImage runtime is built for x86-64 and aarch64 Linux",
)

# The stand-in app: reports its arguments, the runtime's environment variables, its working
# folder, the file system its AppDir is on and a file read from the image.
FAKE_APP = r"""#!/bin/sh
case "$1" in
  --exit) exit "$2" ;;
  --kill-self) kill -TERM $$; sleep 5 ;;
  --wait-term) trap 'exit 3' TERM; echo $$ > "$2"; while :; do sleep 0.05; done ;;
  --exec-sleep) echo $$ > "$2"; exec sleep 60 ;;
  --background) (sleep 1; cat "$(dirname "$0")/data.txt" > "$2") & exit 0 ;;
esac
echo "ARGC=$#"
for a in "$@"; do echo "ARG=$a"; done
echo "APPDIR=$APPDIR"
echo "APPIMAGE=$APPIMAGE"
echo "ARGV0=$ARGV0"
echo "OWD=$OWD"
echo "HOME=$HOME"
echo "PWD=$(pwd)"
awk -v d="$APPDIR" '{for (i = 7; i <= NF; i++) if ($i == "-") break} $5 == d {print "FSTYPE=" $(i + 1)}' /proc/self/mountinfo
echo "DATA=$(cat "$(dirname "$0")/data.txt")"
"""


def _report(stdout: str) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {"ARG": []}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "ARG":
            args = out["ARG"]
            assert isinstance(args, list)
            args.append(value)
        else:
            out[key] = value
    return out


def _make_fake_bundle(folder: Path) -> Path:
    bundle = folder / "Based"
    (bundle / "_internal" / "ro").mkdir(parents=True)
    app = bundle / "based"
    app.write_text(FAKE_APP, encoding="utf-8")
    app.chmod(0o755)
    (bundle / "data.txt").write_text("from the image\n", encoding="utf-8")
    os.link(bundle / "data.txt", bundle / "_internal" / "data-link.txt")
    (bundle / "_internal" / "lib.so.1").write_bytes(bytes(range(256)) * 1000)
    os.symlink("lib.so.1", bundle / "_internal" / "lib.so")
    (bundle / "_internal" / "name with spaces.txt").write_text("spaces\n", encoding="utf-8")
    (bundle / "_internal" / "ro").chmod(0o555)
    return bundle


def _build_runtime() -> Path:
    r = subprocess.run([str(AI / "build_runtime.sh")], capture_output=True, text=True, timeout=600)
    if r.returncode == 2:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runtime() -> Path:
    return _build_runtime()


@pytest.fixture(scope="module")
def appimage(runtime: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("mksquashfs"):
        pytest.skip("mksquashfs is missing (apt-get install squashfs-tools)")
    folder = tmp_path_factory.mktemp("appimage")
    bundle = _make_fake_bundle(folder)
    out = folder / "Fake-x86_64.AppImage"
    env = dict(os.environ, APPIMAGE_RUNTIME=str(runtime), SOURCE_DATE_EPOCH="1700000000")
    r = subprocess.run([str(AI / "build_appimage.sh"), str(bundle), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (bundle / "_internal" / "ro").chmod(0o755)
    return out


def _run(cmd: list[str], tmpdir: Path, cwd: Path, *, extra: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "TMPDIR": str(tmpdir), **(extra or {})}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _fuse_mounts_of(path: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [ln for ln in lines if " fuse.appimage " in ln and str(path) in ln]


def _wait_until(cond: Callable[[], bool], seconds: float = 20.0) -> bool:
    """Polls an asynchronous clean-up (the FUSE server unmounts after the app has gone)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def _left_in(folder: Path) -> list[str]:
    """What is left in a TMPDIR once the runtime's clean-up is over (the FUSE server removes its
    mount point just after unmounting, while the app's caller may already have gone on)."""
    _wait_until(lambda: not any(folder.iterdir()))
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def work(tmp_path: Path) -> tuple[Path, Path]:
    tmpdir = tmp_path / "tmp"
    cwd = tmp_path / "cwd"
    tmpdir.mkdir()
    cwd.mkdir()
    return tmpdir, cwd


# -- the runtime itself ---------------------------------------------------------------------------


def _elf_sections(data: bytes) -> dict[str, tuple[int, int]]:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = heads[shstrndx]
    names = data[strtab[4]: strtab[4] + strtab[5]]
    out = {}
    for h in heads:
        name = names[h[0]: names.index(b"\0", h[0])].decode()
        out[name] = (h[4], h[5])
    return out


def test_runtime_is_a_static_elf_with_the_type2_magic_and_is_cached(runtime: Path) -> None:
    data = runtime.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2  # ELF64
    assert data[8:11] == b"AI\x02"
    machine, = struct.unpack_from("<H", data, 0x12)
    assert machine == {"x86_64": 62, "aarch64": 183}[platform.machine()]
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = {struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)}
    assert 3 not in types and 2 not in types  # no PT_INTERP, no PT_DYNAMIC: static
    sections = _elf_sections(data)
    assert sections[".upd_info"][1] == 1024 and sections[".sha256_sig"][1] == 1024
    assert sections[".sig_key"][1] == 8192
    assert data[sections[".upd_info"][0]: sections[".upd_info"][0] + 1024] == bytes(1024)
    # the second build is the cached file, untouched
    before = runtime.stat().st_mtime_ns
    r = subprocess.run([str(AI / "build_runtime.sh")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and Path(r.stdout.strip()) == runtime
    assert "building" not in r.stderr and runtime.stat().st_mtime_ns == before


def test_options(appimage: Path, runtime: Path, work: tuple[Path, Path]) -> None:
    tmpdir, cwd = work
    r = _run([str(appimage), "--appimage-offset"], tmpdir, cwd)
    assert r.returncode == 0 and int(r.stdout) == runtime.stat().st_size
    assert appimage.read_bytes()[int(r.stdout): int(r.stdout) + 4] == b"hsqs"  # squashfs magic
    r = _run([str(appimage), "--appimage-version"], tmpdir, cwd)
    assert r.returncode == 0 and r.stderr.startswith("AppImage runtime version: based-")
    r = _run([str(appimage), "--appimage-help"], tmpdir, cwd)
    assert r.returncode == 0
    for opt in ("extract", "extract-and-run", "mount", "offset", "portable-home", "version"):
        assert f"--appimage-{opt}" in r.stderr
    for key in ("--appimage-updateinfo", "--appimage-signature"):
        r = _run([str(appimage), key], tmpdir, cwd)
        assert (r.returncode, r.stdout) == (0, "\n")
    r = _run([str(appimage), "--appimage-frobnicate"], tmpdir, cwd)
    assert r.returncode == 1 and "--appimage-frobnicate" in r.stderr
    r = _run([str(appimage), "--appimage-extract", "a", "b"], tmpdir, cwd)
    assert r.returncode == 1 and "usage" in r.stderr
    assert not (cwd / "squashfs-root").exists()


# -- the AppImage's contents ----------------------------------------------------------------------


def test_extract_gives_the_appdir(appimage: Path, work: tuple[Path, Path]) -> None:
    tmpdir, cwd = work
    r = _run([str(appimage), "--appimage-extract"], tmpdir, cwd)
    assert r.returncode == 0, r.stderr
    root = cwd / "squashfs-root"
    apprun = root / "AppRun"
    assert apprun.stat().st_mode & 0o777 == 0o755 and apprun.read_text().startswith("#!/bin/sh")
    assert (root / f"{APP_ID}.desktop").read_bytes() == (
        ROOT / "resources" / "linux" / f"{APP_ID}.desktop").read_bytes()
    assert os.readlink(root / ".DirIcon") == f"{APP_ID}.png"
    assert (root / f"{APP_ID}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    share = root / "usr" / "share"
    assert (share / "applications" / f"{APP_ID}.desktop").is_file()
    assert (share / "metainfo" / f"{APP_ID}.metainfo.xml").is_file()
    for size in (16, 32, 48, 64, 128, 256, 512):
        assert (share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png").is_file()
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    app = root / "opt" / "based"
    assert os.access(app / "based", os.X_OK)
    assert (app / "_internal" / "lib.so.1").read_bytes() == bytes(range(256)) * 1000
    assert os.readlink(app / "_internal" / "lib.so") == "lib.so.1"
    assert (app / "_internal" / "name with spaces.txt").read_text() == "spaces\n"
    # hard links stay hard links; modes and (SOURCE_DATE_EPOCH) times are kept
    data, link = app / "data.txt", app / "_internal" / "data-link.txt"
    assert data.stat().st_ino == link.stat().st_ino and data.stat().st_nlink == 2
    assert stat.S_IMODE((app / "_internal" / "ro").stat().st_mode) == 0o555
    assert data.stat().st_mtime == 1_700_000_000
    # extracting again over the first extraction (read-only folder included) works
    r = _run([str(appimage), "--appimage-extract"], tmpdir, cwd)
    assert r.returncode == 0, r.stderr
    assert _left_in(tmpdir) == []
    (app / "_internal" / "ro").chmod(0o755)


def test_extract_with_a_pattern(appimage: Path, work: tuple[Path, Path]) -> None:
    tmpdir, cwd = work
    r = _run([str(appimage), "--appimage-extract", "*.desktop"], tmpdir, cwd)
    assert r.returncode == 0, r.stderr
    got = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    assert got == ["squashfs-root", f"squashfs-root/{APP_ID}.desktop"]
    r = _run([str(appimage), "--appimage-extract", "opt/based/_internal"], tmpdir, cwd)
    assert r.returncode == 0, r.stderr
    assert (cwd / "squashfs-root" / "opt" / "based" / "_internal" / "lib.so.1").is_file()
    assert not (cwd / "squashfs-root" / "opt" / "based" / "based").exists()


# -- running it -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "environment"])
def test_extract_and_run(appimage: Path, work: tuple[Path, Path], how: str) -> None:
    tmpdir, cwd = work
    args = ["one", "two words", "", "--three"]
    if how == "option":
        r = _run([str(appimage), "--appimage-extract-and-run", *args], tmpdir, cwd)
    else:
        r = _run([str(appimage), *args], tmpdir, cwd, extra={"APPIMAGE_EXTRACT_AND_RUN": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # never tried FUSE, so nothing to say
    rep = _report(r.stdout)
    assert rep["ARG"] == args and rep["ARGC"] == "4"
    appdir = Path(str(rep["APPDIR"]))
    assert appdir.parent == tmpdir and appdir.name.startswith("appimage_extracted_")
    assert rep["APPIMAGE"] == str(appimage) and rep["ARGV0"] == str(appimage)
    assert rep["OWD"] == str(cwd) and rep["PWD"] == str(cwd)
    assert rep["DATA"] == "from the image" and "FSTYPE" not in rep
    assert _left_in(tmpdir) == []  # the extracted copy is gone


def test_extract_and_run_passes_the_exit_status_and_keeps_with_no_cleanup(
        appimage: Path, work: tuple[Path, Path]) -> None:
    tmpdir, cwd = work
    r = _run([str(appimage), "--exit", "42"], tmpdir, cwd, extra={"APPIMAGE_EXTRACT_AND_RUN": "1"})
    assert r.returncode == 42
    assert _left_in(tmpdir) == []
    r = _run([str(appimage), "--appimage-extract-and-run"], tmpdir, cwd, extra={"NO_CLEANUP": "1"})
    assert r.returncode == 0
    kept = Path(str(_report(r.stdout)["APPDIR"]))
    assert (kept / "opt" / "based" / "data.txt").is_file()
    shutil.rmtree(kept)


def test_extract_and_run_signals(appimage: Path, work: tuple[Path, Path]) -> None:
    tmpdir, cwd = work
    extra = {"APPIMAGE_EXTRACT_AND_RUN": "1"}
    # the app dies of a signal: the runtime cleans up and dies of the same signal
    r = _run([str(appimage), "--kill-self"], tmpdir, cwd, extra=extra)
    assert r.returncode == -signal.SIGTERM
    assert _left_in(tmpdir) == []
    # a signal sent to the runtime reaches the app; the app's exit status comes back
    pidfile = cwd / "pid"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "TMPDIR": str(tmpdir), **extra}
    p = subprocess.Popen([str(appimage), "--wait-term", str(pidfile)], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        app_pid = int(pidfile.read_text())
        assert app_pid != p.pid  # the app runs as the runtime's child
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert _left_in(tmpdir) == []


def test_a_broken_image_fails_in_one_message(appimage: Path, runtime: Path,
                                            work: tuple[Path, Path]) -> None:
    tmpdir, cwd = work
    broken = cwd / "broken.AppImage"
    broken.write_bytes(appimage.read_bytes()[: runtime.stat().st_size + 64])
    broken.chmod(0o755)
    r = _run([str(broken)], tmpdir, cwd, extra={"APPIMAGE_EXTRACT_AND_RUN": "1"})
    assert r.returncode == 127
    assert "broken.AppImage" in r.stderr and "Traceback" not in r.stderr
    assert _left_in(tmpdir) == []


@pytest.mark.parametrize("extra", [{}, {"APPIMAGE_EXTRACT_AND_RUN": "1"}])
def test_no_writable_tmpdir_is_one_sentence(appimage: Path, work: tuple[Path, Path],
                                            extra: dict[str, str]) -> None:
    _, cwd = work
    r = _run([str(appimage)], cwd / "missing", cwd, extra=extra)
    assert r.returncode == 127
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "set TMPDIR to a writable folder" in lines[0], r.stderr


def test_portable_home(appimage: Path, work: tuple[Path, Path]) -> None:
    tmpdir, cwd = work
    copy = cwd / "My Apps" / "Based x.AppImage"  # spaces in the path: the spec's MUST
    copy.parent.mkdir()
    shutil.copy2(appimage, copy)
    r = _run([str(copy), "--appimage-portable-home"], tmpdir, cwd)
    assert r.returncode == 0 and Path(f"{copy}.home").is_dir()
    r = _run([str(copy), "--appimage-extract-and-run"], tmpdir, cwd)
    assert r.returncode == 0, r.stderr
    rep = _report(r.stdout)
    assert rep["HOME"] == f"{copy}.home" and rep["APPIMAGE"] == str(copy)


def test_plain_run_mounts_with_fuse_or_falls_back(appimage: Path, work: tuple[Path, Path]) -> None:
    """A plain run as this user: a FUSE mount where the machine allows it (checked in detail by the
    `appimage`-marked matrix), else the one-line notice and a temporary extraction."""
    tmpdir, cwd = work
    r = _run([str(appimage), "a b", "c"], tmpdir, cwd)
    assert r.returncode == 0, r.stderr
    rep = _report(r.stdout)
    assert rep["ARG"] == ["a b", "c"] and rep["DATA"] == "from the image"
    assert rep["APPIMAGE"] == str(appimage) and rep["OWD"] == str(cwd)
    appdir = Path(str(rep["APPDIR"]))
    assert appdir.parent == tmpdir
    if appdir.name.startswith(".mount_"):
        assert rep["FSTYPE"] == "fuse.appimage" and r.stderr == ""
        assert _wait_until(lambda: not _fuse_mounts_of(appdir) and not appdir.exists())
    else:
        assert appdir.name.startswith("appimage_extracted_") and "FSTYPE" not in rep
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and "FUSE is not available (" in lines[0], r.stderr
    assert _left_in(tmpdir) == []


# -- root and an unprivileged user, FUSE on and off (marked: needs root) -----------------------------

NS_WRAPPER = r"""#!/bin/sh
# Runs inside `unshare -m`: a private /dev for the case, then the command, then waits for the
# FUSE server to unmount and reports what is left.
mount -t tmpfs -o mode=755 tmpfs /dev || exit 90
mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5 && mknod -m 666 /dev/urandom c 1 9 || exit 91
[ "$CASE_DEV_FUSE" = yes ] && { mknod -m 666 /dev/fuse c 10 229 || exit 92; }
[ -n "$CASE_HIDE" ] && { for f in $CASE_HIDE; do mount --bind "$CASE_EMPTY" "$f" || exit 93; done; }
"$@"
rc=$?
i=0
while grep -q ' fuse.appimage ' /proc/self/mountinfo && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
echo "LEFTOVER_MOUNTS=$(grep -c ' fuse.appimage ' /proc/self/mountinfo)"
exit $rc
"""


@pytest.fixture()
def matrix_dir(appimage: Path) -> Iterator[Path]:
    """A folder an unprivileged user can reach (tmp_path is root's alone): the AppImage, a home
    and a TMPDIR owned by that user, the namespace wrapper."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces, an unprivileged user)")
    for tool in ("unshare", "setpriv", "mknod", "mount"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing (util-linux / coreutils)")
    base = Path(tempfile.mkdtemp(prefix="based-appimage-"))
    try:
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs",
                                "tmpfs", str(base)], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip(f"this machine allows no mount namespace: {probe.stderr.strip()}")
        base.chmod(0o755)
        shutil.copy2(appimage, base / "Fake.AppImage")
        for d in ("home", "tmp"):
            (base / d).mkdir()
            os.chown(base / d, NOBODY, NOBODY)
        (base / "empty").write_bytes(b"")
        (base / "ns.sh").write_text(NS_WRAPPER, encoding="utf-8")
        (base / "ns.sh").chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _kernel_has_fuse() -> bool:
    return any(ln.split()[-1] == "fuse" for ln in Path("/proc/filesystems").read_text().splitlines())


def _fusermount3() -> Path | None:
    for p in (Path("/usr/bin/fusermount3"), Path("/bin/fusermount3")):
        if p.exists() and p.stat().st_uid == 0 and p.stat().st_mode & stat.S_ISUID:
            return p
    return None


def _run_case(base: Path, user: str, *, dev_fuse: bool, hide: list[str] | None = None,
              setpriv: list[str] | None = None, path: str = "/usr/bin:/bin",
              args: list[str] | None = None, extra: dict[str, str] | None = None,
              script: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(base / "home"), "TMPDIR": str(base / "tmp"),
           "CASE_DEV_FUSE": "yes" if dev_fuse else "no", "CASE_HIDE": " ".join(hide or []),
           "CASE_EMPTY": str(base / "empty"), **(extra or {})}
    who = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"] if user == "user" else []
    who = (who or ["setpriv"]) + (setpriv or []) + ["--"]
    cmd = ["sh", "-c", script] if script else [str(base / "Fake.AppImage"), *(args or ["x y"])]
    return subprocess.run(["unshare", "-m", "--propagation", "private", str(base / "ns.sh"), *who, *cmd],
                          cwd=base / "home", env=env, capture_output=True, text=True, timeout=180)


# (user, /dev/fuse present, extra setpriv options, files hidden, expect a FUSE mount, reason shown)
CASES = {
    "root": ("root", True, [], [], True, None),
    "root-no-dev-fuse": ("root", False, [], [], False, "device not found"),
    "root-no-cap-sys-admin": ("root", True, ["--bounding-set", "-sys_admin"], [], False, "not permitted"),
    "user": ("user", True, [], [], True, None),
    "user-no-dev-fuse": ("user", False, [], [], False, "device not found"),
    "user-no-new-privs": ("user", True, ["--no-new-privs"], [], False, "not permitted"),
    "user-no-fusermount": ("user", True, [], ["fusermount3"], False, "fusermount3"),
}


@pytest.mark.appimage
@pytest.mark.parametrize("case", list(CASES))
def test_fuse_matrix(matrix_dir: Path, case: str) -> None:
    user, dev_fuse, opts, hide, expect_fuse, reason = CASES[case]
    if dev_fuse and not _kernel_has_fuse():
        pytest.skip("this kernel has no FUSE ('fuse' is not in /proc/filesystems)")
    fm = _fusermount3()
    if user == "user" and fm is None:
        pytest.skip("no set-user-ID fusermount3 (apt-get install fuse3)")
    hidden = [str(fm)] if hide and fm else []
    r = _run_case(matrix_dir, user, dev_fuse=dev_fuse, hide=hidden, setpriv=opts)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _report(r.stdout)
    assert rep["ARG"] == ["x y"] and rep["DATA"] == "from the image", r.stdout + r.stderr
    assert rep["APPIMAGE"] == str(matrix_dir / "Fake.AppImage")
    assert rep["OWD"] == str(matrix_dir / "home") and rep["HOME"] == str(matrix_dir / "home")
    appdir = Path(str(rep["APPDIR"]))
    assert appdir.parent == matrix_dir / "tmp"
    if expect_fuse:
        assert appdir.name.startswith(".mount_Fake.A") and rep["FSTYPE"] == "fuse.appimage"
        assert r.stderr == ""
    else:
        assert appdir.name.startswith("appimage_extracted_Fake.A") and "FSTYPE" not in rep
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and "FUSE is not available (" in lines[0], r.stderr
        assert reason is not None and reason in lines[0], lines[0]
    assert rep["LEFTOVER_MOUNTS"] == "0"
    assert _left_in(matrix_dir / "tmp") == []
    # never uses FUSE when asked not to
    r = _run_case(matrix_dir, user, dev_fuse=dev_fuse, hide=hidden, setpriv=opts,
                  extra={"APPIMAGE_EXTRACT_AND_RUN": "1"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert Path(str(_report(r.stdout)["APPDIR"])).name.startswith("appimage_extracted_")
    assert _left_in(matrix_dir / "tmp") == []


@pytest.mark.appimage
def test_fuse2_fusermount_only(matrix_dir: Path) -> None:
    """A system with FUSE 2's set-user-ID `fusermount` and no fusermount3 still mounts."""
    fm = _fusermount3()
    if not _kernel_has_fuse() or fm is None:
        pytest.skip("needs FUSE in the kernel and a fusermount3 to stand in for FUSE 2's fusermount")
    bindir = matrix_dir / "fuse2-bin"
    bindir.mkdir()
    shutil.copy2(fm, bindir / "fusermount")
    os.chmod(bindir / "fusermount", 0o4755)
    r = _run_case(matrix_dir, "user", dev_fuse=True, hide=[str(fm)], path=f"{bindir}:/usr/bin:/bin")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _report(r.stdout)
    assert rep["FSTYPE"] == "fuse.appimage" and rep["DATA"] == "from the image", r.stdout + r.stderr
    assert rep["LEFTOVER_MOUNTS"] == "0" and r.stderr == ""
    assert _left_in(matrix_dir / "tmp") == []
    # the same, not permitted to mount: the fallback, and the private fusermount3 link is removed
    r = _run_case(matrix_dir, "user", dev_fuse=True, hide=[str(fm)], path=f"{bindir}:/usr/bin:/bin",
                  setpriv=["--no-new-privs"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FSTYPE" not in _report(r.stdout) and "FUSE is not available (" in r.stderr
    assert _left_in(matrix_dir / "tmp") == []


@pytest.mark.appimage
@pytest.mark.parametrize("user", ["root", "user"])
def test_mount_lifetime(matrix_dir: Path, user: str) -> None:
    """--appimage-mount until Ctrl-C; a background process the app started keeps the mount; an app
    killed with SIGKILL still has its mount removed."""
    if not _kernel_has_fuse() or (user == "user" and _fusermount3() is None):
        pytest.skip("needs FUSE in the kernel (and fusermount3 for the user)")
    ai = matrix_dir / "Fake.AppImage"
    out = matrix_dir / "tmp" / "out"
    script = f"""
        "{ai}" --appimage-mount > "{out}.mnt" & p=$!
        i=0; while [ ! -s "{out}.mnt" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
        m=$(cat "{out}.mnt"); rm -f "{out}.mnt"
        echo "MOUNTED_DATA=$(cat "$m/opt/based/data.txt")"
        kill -INT $p; wait $p; echo "MOUNT_RC=$?"; [ -e "$m" ] && echo STILL_THERE=1
        "{ai}" --background "{out}"; echo "BG_RC=$?"
        i=0; while [ ! -s "{out}" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
        echo "BACKGROUND_DATA=$(cat "{out}")"; rm -f "{out}"
        "{ai}" --exec-sleep "{out}" & p=$!
        i=0; while [ ! -s "{out}" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
        echo "SAME_PID=$([ "$(cat "{out}")" = "$p" ] && echo yes)"; rm -f "{out}"
        kill -KILL $p; wait $p
    """
    r = _run_case(matrix_dir, user, dev_fuse=True, script=script)
    rep = _report(r.stdout)
    assert rep.get("MOUNTED_DATA") == "from the image", r.stdout + r.stderr
    assert rep["MOUNT_RC"] == "0" and "STILL_THERE" not in rep
    assert rep["BG_RC"] == "0" and rep["BACKGROUND_DATA"] == "from the image"
    assert rep["SAME_PID"] == "yes"  # through a FUSE mount the app keeps the pid the user started
    assert rep["LEFTOVER_MOUNTS"] == "0"
    assert _left_in(matrix_dir / "tmp") == []


# -- the real AppImage (marked bundle) -------------------------------------------------------------


def _built_appimage(request: pytest.FixtureRequest) -> Path:
    env = os.environ.get("BASED_APPIMAGE")
    found = [Path(env)] if env else sorted((ROOT / "dist").glob("Based-*.AppImage"))
    if found and found[-1].is_file():
        return found[-1]
    msg = "no built AppImage; build it with packaging/build_linux.sh or set BASED_APPIMAGE"
    if "bundle" in str(request.config.getoption("markexpr", "")) or env:
        pytest.fail(msg)
    pytest.skip(msg + " (select with -m bundle)")


@pytest.mark.slow
@pytest.mark.bundle
@pytest.mark.parametrize("how", ["plain", "extract-and-run"])
def test_built_appimage_self_test(request: pytest.FixtureRequest, tmp_path: Path, how: str) -> None:
    ai = _built_appimage(request)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"HOME": str(tmp_path), "PATH": os.defpath, "TMPDIR": str(tmpdir)}
    if how == "extract-and-run":
        env["APPIMAGE_EXTRACT_AND_RUN"] = "1"
    r = subprocess.run([str(ai), "--self-test"], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("based self-test: ok (") and "window ok" in r.stdout, r.stdout
    assert _left_in(tmpdir) == []
