"""Resumable, verified downloads: the real huggingface_hub client against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from desktop.core import downloads
from desktop.core.downloads import (
    DownloadProgress,
    DownloadSpec,
    discard_partial,
    download,
    partial_downloads,
)
from desktop.core.errors import DownloadCancelled, DownloadError
from desktop.core.gguf_info import read_gguf
from tests.fakehub import FakeHub, use_hub

ROOT = Path(__file__).resolve().parents[2]
REPO = "tester/Tiny-Llama-GGUF"
NAME = "tiny-llama-F16.gguf"
MIB = 1 << 20


@pytest.fixture(scope="module")
def gguf_bytes(tiny_llama_spm: Path) -> bytes:
    """A real tiny GGUF (llama SPM vocab, built once per session by conftest)."""
    data = tiny_llama_spm.read_bytes()
    assert len(data) > 3 * MIB  # several pieces, so offsets mid-file mean something
    return data


@pytest.fixture
def hub(
    gguf_bytes: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> FakeHub:
    with FakeHub({REPO: {NAME: gguf_bytes, "README.md": b"# tiny\n"}}) as fake:
        use_hub(monkeypatch, tmp_path, fake)
        yield fake


def spec(dest: Path, **kw: object) -> DownloadSpec:
    return DownloadSpec(repo_id=REPO, filename=NAME, dest_dir=dest, **kw)  # type: ignore[arg-type]


def body_gets(hub: FakeHub) -> list[str | None]:
    """The Range header of each GET for file bytes, in order."""
    return [r.range for r in hub.requests if r.method == "GET" and r.server == "cdn"]


def wait_for_size(path: Path, n: int, timeout: float = 20.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size >= n:
            return path.stat().st_size
        time.sleep(0.02)
    raise AssertionError(f"{path.name} never reached {n} bytes")


def test_download_with_progress(hub: FakeHub, gguf_bytes: bytes, tmp_path: Path) -> None:
    seen: list[DownloadProgress] = []
    path = download(spec(tmp_path / "m"), seen.append, threading.Event())
    assert path == tmp_path / "m" / NAME
    assert path.read_bytes() == gguf_bytes
    assert read_gguf(path).file_size == len(gguf_bytes)
    assert sorted(p.name for p in path.parent.iterdir()) == [NAME]  # no partial, no sidecar
    done = [p.done_bytes for p in seen]
    assert done == sorted(done) and done[0] == 0
    assert seen[-1].done_bytes == seen[-1].total_bytes == len(gguf_bytes)
    assert all(p.total_bytes == len(gguf_bytes) and p.resumed_from == 0 for p in seen)
    assert seen[-1].eta_s == 0.0
    # Bytes come from the CDN location, without the Hub's auth header, in one GET.
    assert body_gets(hub) == [None]
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in hub.requests)


def test_small_git_file_is_checked_with_its_blob_sha1(hub: FakeHub, tmp_path: Path) -> None:
    path = download(DownloadSpec(repo_id=REPO, filename="README.md", dest_dir=tmp_path))
    assert path.read_bytes() == b"# tiny\n"


def test_dropped_connection_continues_with_a_range(
    hub: FakeHub, gguf_bytes: bytes, tmp_path: Path
) -> None:
    cut = len(gguf_bytes) // 3 + 12345
    hub.drop_after, hub.drops_left = cut, 1
    seen: list[DownloadProgress] = []
    path = download(spec(tmp_path), seen.append, threading.Event())
    assert path.read_bytes() == gguf_bytes
    assert body_gets(hub) == [None, f"bytes={cut}-"]
    done = [p.done_bytes for p in seen]
    assert done == sorted(done) and done[-1] == len(gguf_bytes)


def test_repeated_drops_keep_the_partial_for_the_next_call(
    hub: FakeHub, gguf_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "MAX_RETRIES", 1)
    cut = 2 * MIB + 777
    hub.drop_after, hub.drops_left = cut, 1000
    hub.stall_after = None
    with pytest.raises(DownloadError, match="connection dropped") as err:
        download(spec(tmp_path), None, threading.Event())
    assert "\n" not in str(err.value)
    assert not (tmp_path / NAME).exists()
    [part] = partial_downloads(tmp_path)
    assert (part.repo_id, part.filename, part.done_bytes, part.total_bytes) == (
        REPO, NAME, cut, len(gguf_bytes),
    )
    hub.drops_left = 0
    hub.requests.clear()
    seen: list[DownloadProgress] = []
    path = download(spec(tmp_path), seen.append, threading.Event())
    assert path.read_bytes() == gguf_bytes
    assert body_gets(hub) == [f"bytes={cut}-"]
    assert seen[0].done_bytes == seen[0].resumed_from == cut
    assert partial_downloads(tmp_path) == []


_CHILD = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from desktop.core.downloads import DownloadSpec, download
download(DownloadSpec(repo_id=sys.argv[2], filename=sys.argv[3], dest_dir=Path(sys.argv[4])),
         None, threading.Event())
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_mid_file_then_restart_fetches_only_the_missing_range(
    hub: FakeHub, gguf_bytes: bytes, tmp_path: Path
) -> None:
    stall = len(gguf_bytes) // 2 + 999
    hub.stall_after = stall
    dest = tmp_path / "models"
    env = dict(os.environ)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(ROOT), REPO, NAME, str(dest)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        part = dest / (NAME + ".incomplete")
        have = wait_for_size(part, stall)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert have == stall and part.stat().st_size == stall
    assert not (dest / NAME).exists()

    # "Restart": a fresh call in this process continues from the bytes on disk.
    hub.stall_after = None
    hub.requests.clear()
    seen: list[DownloadProgress] = []
    path = download(spec(dest), seen.append, threading.Event())
    assert path.read_bytes() == gguf_bytes
    assert body_gets(hub) == [f"bytes={stall}-"]
    assert seen[0].resumed_from == stall
    assert sorted(p.name for p in dest.iterdir()) == [NAME]


def test_sha256_mismatch_is_rejected_and_nothing_is_left(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt = True
    with pytest.raises(DownloadError, match="sha256") as err:
        download(spec(tmp_path), None, threading.Event())
    assert "damaged" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
    assert partial_downloads(tmp_path) == []


def test_expected_sha256_that_disagrees_with_the_hub_is_refused(
    hub: FakeHub, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match="changed on Hugging Face"):
        download(spec(tmp_path, expected_sha256="0" * 64), None, threading.Event())
    assert body_gets(hub) == []


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "paste a Hugging Face access token in Settings"),
        (403, f"https://huggingface.co/{REPO}"),
        (404, "no file named"),
        (500, "server error (500)"),
        (503, "try again in a few minutes"),
    ],
)
def test_http_errors_are_one_plain_sentence(
    hub: FakeHub, tmp_path: Path, status: int, words: str
) -> None:
    hub.fail(REPO, status, filename=NAME)
    with pytest.raises(DownloadError) as err:
        download(spec(tmp_path), None, threading.Event())
    msg = str(err.value)
    assert words in msg, msg
    assert "\n" not in msg and "Traceback" not in msg
    if status == 403:
        assert "licence" in msg and "token" in msg
    assert body_gets(hub) == []
    assert partial_downloads(tmp_path) == []


def test_missing_repo_says_check_the_name(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="did not find nobody/nothing"):
        download(DownloadSpec(repo_id="nobody/nothing", filename=NAME, dest_dir=tmp_path))


def test_stalled_server_is_cancelled(hub: FakeHub, gguf_bytes: bytes, tmp_path: Path) -> None:
    stall = MIB + 4321
    hub.stall_after = stall
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            download(spec(tmp_path), None, cancel)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run)
    t.start()
    wait_for_size(tmp_path / (NAME + ".incomplete"), stall)
    cancel.set()
    t.join(timeout=15)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DownloadCancelled)
    assert "\n" not in str(outcome[0])
    [part] = partial_downloads(tmp_path)
    assert part.done_bytes == stall
    assert not (tmp_path / NAME).exists()


def test_a_server_that_stops_sending_times_out_in_words(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "STALL_LIMIT_S", 0.5)
    hub.stall_after = 1000
    with pytest.raises(DownloadError, match="stopped sending"):
        download(spec(tmp_path), None, threading.Event())
    assert partial_downloads(tmp_path)[0].done_bytes == 1000


def test_refuses_without_enough_disk_space(
    hub: FakeHub, gguf_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 1234))
    with pytest.raises(DownloadError, match="Not enough free disk space") as err:
        download(spec(tmp_path), None, threading.Event())
    assert "1.2 KB" in str(err.value) and "free" in str(err.value)
    assert body_gets(hub) == []
    assert not (tmp_path / NAME).exists()


def test_offline_refuses_without_touching_the_network(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="You are offline"):
        download(spec(tmp_path), None, threading.Event())
    assert hub.requests == []


def test_no_network_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gguf_bytes: bytes
) -> None:
    with FakeHub({REPO: {NAME: gguf_bytes}}) as fake:
        use_hub(monkeypatch, tmp_path, fake)
    # The hub is closed: its port now refuses connections.
    with pytest.raises(DownloadError, match="You seem to be offline: this computer cannot reach 127.0.0.1"):
        download(spec(tmp_path), None, threading.Event())


def test_a_progress_callback_that_raises_stops_and_keeps_the_partial(
    hub: FakeHub, gguf_bytes: bytes, tmp_path: Path
) -> None:
    class Stop(Exception):
        pass

    def on_progress(p: DownloadProgress) -> None:
        if p.done_bytes > MIB:
            raise Stop

    hub.stall_after = 2 * MIB  # stalled, it still reports (speed falling to 0) about once a second
    with pytest.raises(Stop):
        download(spec(tmp_path), on_progress, threading.Event())
    [part] = partial_downloads(tmp_path)
    assert part.done_bytes > MIB
    hub.stall_after = None
    path = download(spec(tmp_path), None, threading.Event())
    assert path.read_bytes() == gguf_bytes


def test_a_progress_callback_that_raises_mid_body_is_not_taken_for_a_network_error(
    hub: FakeHub, gguf_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stop(Exception):
        pass

    def on_progress(p: DownloadProgress) -> None:
        if p.done_bytes > MIB:
            raise Stop

    monkeypatch.setattr(downloads, "PROGRESS_INTERVAL_S", 0.0)  # a report for every piece read
    hub.stall_after = None
    with pytest.raises(Stop):
        download(spec(tmp_path), on_progress, threading.Event())
    [part] = partial_downloads(tmp_path)
    assert MIB < part.done_bytes < len(gguf_bytes)


def test_a_changed_remote_file_starts_over(
    hub: FakeHub, gguf_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "MAX_RETRIES", 0)
    hub.drop_after, hub.drops_left = MIB, 1000
    with pytest.raises(DownloadError):
        download(spec(tmp_path), None, threading.Event())
    assert partial_downloads(tmp_path)[0].done_bytes == MIB
    new = gguf_bytes[::-1]
    hub.set_file(REPO, NAME, new)
    hub.drops_left = 0
    hub.requests.clear()
    path = download(spec(tmp_path), None, threading.Event())
    assert path.read_bytes() == new
    assert body_gets(hub) == [None]


def test_discard_partial(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads, "MAX_RETRIES", 0)
    hub.drop_after, hub.drops_left = MIB, 1000
    with pytest.raises(DownloadError):
        download(spec(tmp_path), None, threading.Event())
    assert partial_downloads(tmp_path)
    discard_partial(tmp_path, NAME)
    assert list(tmp_path.iterdir()) == []
    discard_partial(tmp_path, NAME)  # nothing there: no error


def test_same_file_twice_at_once_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    hub.stall_after = 1000
    cancel = threading.Event()
    t = threading.Thread(target=lambda: pytest.raises(DownloadCancelled, download, spec(tmp_path), None, cancel))
    t.start()
    wait_for_size(tmp_path / (NAME + ".incomplete"), 1000)
    try:
        with pytest.raises(DownloadError, match="already being downloaded"):
            download(spec(tmp_path), None, threading.Event())
    finally:
        cancel.set()
        t.join(timeout=15)


def test_unsafe_file_names_are_refused(tmp_path: Path) -> None:
    for bad in ("../evil.gguf", "/abs.gguf", "a/../../b.gguf", ""):
        with pytest.raises(DownloadError):
            download(DownloadSpec(repo_id=REPO, filename=bad, dest_dir=tmp_path))
