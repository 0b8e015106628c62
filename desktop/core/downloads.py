"""Resumable, verified downloads of single files from Hugging Face. No Qt here.

``download(spec, on_progress, cancel)`` uses huggingface_hub's own helpers for the URL
(``hf_hub_url``), the metadata (``get_hf_file_metadata``: size, etag, commit, CDN location), the
auth and user agent (``build_hf_headers``), but fetches the bytes itself (standard library HTTP,
1 MiB reads) with ``Range: bytes=N-``:
huggingface_hub deletes its partial file when a call fails, and its Xet path ignores exceptions
raised from progress callbacks.

On disk, next to the final file:

- ``<name>.incomplete``: the bytes received so far (written as they arrive, so a killed process
  keeps them);
- ``<name>.incomplete.json``: repo, revision, commit, etag, size and sha256 of what is being
  fetched. A later call (even after a restart) continues with a Range request for the missing
  bytes when the remote etag and size are unchanged, and starts over otherwise.

The sha256 (the LFS etag, or ``spec.expected_sha256``) is checked before the file gets its final
name with ``os.replace``; a half-written or unverified file never has a ``.gguf`` name.

A split model (``name-00001-of-00003.gguf``, any part named) is fetched whole, part after part,
each part resumable and checked against its own sha256, with progress over the whole model
(:mod:`desktop.core.download_split`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from desktop.core import hub
from desktop.core.download_io import (
    _get,
    _hash_existing,
    _Hashes,
    _same_origin,
    _Sink,
)
from desktop.core.download_state import (
    SIDECAR_VERSION,
    PartialInfo,
    _discard_file,
    _partial_path,
    _read_sidecar,
    _sidecar_path,
    _target,
    _write_sidecar,
    discard_partial,
    partial_downloads,
)
from desktop.core.errors import DownloadCancelled, DownloadError
from desktop.core.gguf_info import human_bytes
from desktop.core.gguf_split import parse_split_name
from desktop.core.paths import default_models_dir

__all__ = [
    "DownloadProgress",
    "DownloadSpec",
    "PartialInfo",
    "discard_partial",
    "download",
    "partial_downloads",
]

CONNECT_TIMEOUT_S = 10.0
METADATA_TIMEOUT_S = 10.0
STALL_LIMIT_S = 60.0  # no byte for this long: give up with a timeout sentence (partial kept)
MAX_RETRIES = 5  # dropped connections in a row without progress before giving up
PROGRESS_INTERVAL_S = 0.1
DISK_MARGIN = 64 << 20

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class DownloadSpec:
    """One file to fetch. ``dest_dir / filename`` is where it ends up.

    For a split model ``filename`` names any of its parts and every part is fetched; then
    ``expected_size`` is the whole model's size, ``part_sizes``/``part_sha256`` (from a listing,
    in part order) are checked per part, and ``expected_sha256``, when given, is part 1's.
    """

    repo_id: str
    filename: str
    revision: str = "main"
    dest_dir: Path = field(default_factory=default_models_dir)
    expected_size: int | None = None
    expected_sha256: str | None = None
    part_sizes: tuple[int | None, ...] = ()
    part_sha256: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class DownloadProgress:
    done_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    resumed_from: int


# ----- one download at a time per file --------------------------------------------------------

_ACTIVE: set[Path] = set()
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def _claim(final: Path) -> Iterator[None]:
    key = final.resolve()
    with _ACTIVE_LOCK:
        if key in _ACTIVE:
            raise DownloadError(f"{final.name} is already being downloaded: wait for it to finish.")
        _ACTIVE.add(key)
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(key)


# ----- what the hub says about the file (huggingface_hub's own metadata call) ------------------


@dataclass
class _Remote:
    url: str  # where the bytes are (the CDN location for LFS files)
    size: int
    etag: str | None
    commit: str | None
    sha256: str | None
    git_sha1: str | None


def _metadata(spec: DownloadSpec, headers: dict[str, str]) -> _Remote:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = hub.hub_endpoint()
    url = hf_hub_url(spec.repo_id, spec.filename, revision=spec.revision, endpoint=endpoint)
    kwargs = hub.supported_kwargs(
        get_hf_file_metadata,
        timeout=METADATA_TIMEOUT_S,
        headers=headers,
        endpoint=endpoint,
        library_name="based",
    )
    try:
        meta = get_hf_file_metadata(url, **kwargs)
    except Exception as exc:
        raise hub.explain_http_error(exc, spec.repo_id, spec.filename) from exc
    size = meta.size if meta.size is not None else spec.expected_size
    if size is None:
        raise DownloadError(
            f"Hugging Face did not say how big {spec.filename} is, so Based cannot check it: "
            "try again later."
        )
    etag = (meta.etag or "").strip('"').lower() or None
    if etag and etag.startswith("w/"):
        etag = etag[2:].strip('"')
    sha256 = etag if etag and _SHA256_RE.match(etag) else None
    git_sha1 = etag if etag and _SHA1_RE.match(etag) else None
    location = meta.location or url
    return _Remote(location, int(size), etag, meta.commit_hash, sha256, git_sha1)


# ----- progress -------------------------------------------------------------------------------


class _CallbackFailed(Exception):
    """``on_progress`` raised: carried past the reconnect loop (which would otherwise take it for a
    network error) and re-raised as itself by :func:`download`."""


class _Progress:
    def __init__(
        self, cb: Callable[[DownloadProgress], None] | None, total: int, resumed_from: int
    ) -> None:
        self.cb = cb
        self.total = total
        self.resumed_from = resumed_from
        self.last_emit = 0.0
        self.samples: deque[tuple[float, int]] = deque()

    def update(self, done: int, *, force: bool = False) -> None:
        if self.cb is None:
            return
        now = time.monotonic()
        if not force and now - self.last_emit < PROGRESS_INTERVAL_S:
            return
        self.last_emit = now
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        speed = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        remaining = max(self.total - done, 0)
        eta = remaining / speed if speed > 0 else (0.0 if remaining == 0 else None)
        try:
            self.cb(DownloadProgress(done, self.total, speed, eta, self.resumed_from))
        except Exception as exc:
            raise _CallbackFailed() from exc


# ----- the download ---------------------------------------------------------------------------


def _check_disk(dest_dir: Path, name: str, need: int) -> None:
    try:
        free = shutil.disk_usage(dest_dir).free
    except OSError:
        return
    if need + DISK_MARGIN > free:
        raise DownloadError(
            f"Not enough free disk space for {name}: it needs {human_bytes(need + DISK_MARGIN)} "
            f"but only {human_bytes(free)} is free in {dest_dir}; free some space or choose "
            "another models folder in Settings."
        )


def download(
    spec: DownloadSpec,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Fetch ``spec`` into ``spec.dest_dir``, continuing any partial file; return the final path.

    Raises :class:`DownloadCancelled` when ``cancel`` is set (the partial file is kept) and
    :class:`DownloadError` (one sentence) for everything else. Exceptions raised by
    ``on_progress`` propagate and also keep the partial file. Safe to call from several threads
    for different files.
    """
    cancel = cancel if cancel is not None else threading.Event()
    split = parse_split_name(spec.filename)
    try:
        if split is not None:  # every part, part 1's path returned
            from desktop.core.download_split import download_split

            return download_split(spec, split, on_progress, cancel)
        final = _target(spec.dest_dir, spec.filename)
        with _claim(final):
            return _download(spec, final, on_progress, cancel)
    except _CallbackFailed as exc:
        assert exc.__cause__ is not None
        raise exc.__cause__ from None


def _headers(spec: DownloadSpec, name: str) -> dict[str, str]:
    """Auth and user agent from huggingface_hub (offline refused first)."""
    hub.prepare_client(f"download {name}")
    from huggingface_hub.utils import build_hf_headers

    try:
        return dict(build_hf_headers(library_name="based"))
    except Exception as exc:
        raise hub.explain_http_error(exc, spec.repo_id, spec.filename) from exc


def _cancelled(name: str) -> DownloadCancelled:
    return DownloadCancelled(
        f"The download of {name} was paused; start it again to continue where it stopped."
    )


def _download(
    spec: DownloadSpec,
    final: Path,
    on_progress: Callable[[DownloadProgress], None] | None,
    cancel: threading.Event,
    *,
    prefetched: tuple[dict[str, str], _Remote] | None = None,
    model_size: int | None = None,
) -> Path:
    """One file. ``prefetched``: headers and metadata already asked for (a split model's parts);
    ``model_size``: the whole split model's size, kept in the sidecar for progress after a restart."""
    name = final.name
    if cancel.is_set():
        raise _cancelled(name)
    if prefetched is None:
        headers = _headers(spec, name)
        remote = _metadata(spec, headers)
    else:
        headers, remote = prefetched
    expected_sha = (spec.expected_sha256 or "").lower() or None
    if expected_sha and remote.sha256 and expected_sha != remote.sha256:
        raise DownloadError(
            f"{spec.filename} in {spec.repo_id} has changed on Hugging Face since the list was "
            "made: refresh the list and download it again."
        )
    sha256 = expected_sha or remote.sha256
    git_sha1 = None if sha256 else remote.git_sha1
    if not sha256 and not git_sha1:
        raise DownloadError(
            f"Hugging Face gave no checksum for {spec.filename}, so Based cannot verify it: "
            "try again later or pick another file."
        )
    if spec.expected_size is not None and spec.expected_size != remote.size:
        raise DownloadError(
            f"{spec.filename} in {spec.repo_id} has changed size on Hugging Face since the list "
            "was made: refresh the list and download it again."
        )
    size = remote.size

    final.parent.mkdir(parents=True, exist_ok=True)
    part, side = _partial_path(final), _sidecar_path(final)
    state = {
        "version": SIDECAR_VERSION,
        "repo_id": spec.repo_id,
        "filename": spec.filename,
        "revision": spec.revision,
        "commit": remote.commit,
        "etag": remote.etag,
        "size": size,
        "sha256": sha256,
        "git_sha1": git_sha1,
    }
    if model_size:
        state["model_size"] = model_size
    old = _read_sidecar(side) if part.exists() else None
    keys = ("repo_id", "filename", "etag", "size", "sha256", "git_sha1")
    offset = part.stat().st_size if part.is_file() else 0
    if old is None or any(old.get(k) != state[k] for k in keys) or offset > size:
        offset = 0  # nothing to continue, or the remote file changed: start over
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    _check_disk(final.parent, name, size - offset)
    _write_sidecar(side, state)

    hashes = _Hashes(size, git_sha1 is not None)
    if offset:
        _hash_existing(part, hashes, offset, cancel)
    progress = _Progress(on_progress, size, offset)
    progress.update(offset, force=True)

    get_headers = dict(headers)
    get_headers["Accept-Encoding"] = "identity"
    if not _same_origin(remote.url, hub.hub_endpoint()):
        get_headers.pop("authorization", None)
        get_headers.pop("Authorization", None)

    fd = os.open(part, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    try:
        sink = _Sink(fd, hashes, offset)
        try:
            _fetch(spec, remote.url, get_headers, sink, offset, size, progress, cancel)
        finally:
            sink.close()  # everything received is on disk, even after a cancel or an error
        offset = sink.written
        os.fsync(fd)
    finally:
        os.close(fd)
    progress.update(offset, force=True)

    if sha256:
        ok = hashes.sha256.hexdigest() == sha256
    else:
        ok = hashes.git is not None and hashes.git.hexdigest() == git_sha1
    if not ok:
        _discard_file(final)  # this file only (a split model keeps its verified parts)
        raise DownloadError(
            f"{spec.filename} arrived damaged (its sha256 does not match Hugging Face's): it was "
            "deleted; download it again."
        )
    os.replace(part, final)
    with contextlib.suppress(FileNotFoundError):
        side.unlink()
    return final


def _fetch(
    spec: DownloadSpec,
    url: str,
    headers: dict[str, str],
    sink: _Sink,
    offset: int,
    size: int,
    progress: _Progress,
    cancel: threading.Event,
) -> int:
    """Append bytes from ``offset`` to ``size``; reconnect (Range) after drops and stalls."""
    name = Path(spec.filename).name
    failures = 0
    last_byte = time.monotonic()
    while offset < size:
        if cancel.is_set():
            raise _cancelled(name)
        h = dict(headers)
        if offset:
            h["Range"] = f"bytes={offset}-"
        start_offset = offset
        try:
            with _get(url, h) as r:
                if r.status == 206:
                    m = _CONTENT_RANGE_RE.match(str(r.headers.get("Content-Range") or ""))
                    if not m or int(m.group(1)) != offset:
                        raise DownloadError(
                            f"Hugging Face sent the wrong part of {name}: discard the partial "
                            "download and start it again."
                        )
                elif r.status == 200:
                    if offset:  # the server ignored Range: start over from byte 0
                        sink.restart()
                        offset = start_offset = 0
                else:
                    raise DownloadError(
                        f"Hugging Face answered {r.status} for {name}: try again later."
                    )
                for piece in r.pieces:
                    if not piece:
                        continue
                    if offset + len(piece) > size:
                        raise DownloadError(
                            f"Hugging Face sent more bytes than {name} should have: discard the "
                            "partial download and start it again."
                        )
                    sink.put(piece)
                    offset += len(piece)
                    last_byte = time.monotonic()
                    progress.update(offset)
                    if cancel.is_set():
                        raise _cancelled(name)
            if offset < size:  # the body ended early without an error from the library
                raise ConnectionResetError("connection closed before the end of the body")
        except (DownloadError, DownloadCancelled, _CallbackFailed):
            raise
        except Exception as exc:
            if cancel.is_set():
                raise _cancelled(name) from exc
            kind = hub.classify_network_error(exc)
            timeout = kind == "timeout"
            if kind not in ("timeout", "dropped"):
                raise hub.explain_http_error(exc, spec.repo_id, spec.filename) from exc
            if timeout:
                progress.update(offset)  # the speed falls to 0 while nothing arrives
            if timeout and time.monotonic() - last_byte > STALL_LIMIT_S:
                raise DownloadError(
                    f"Hugging Face stopped sending {name}: check your internet connection and "
                    "try again; the download continues where it stopped."
                ) from exc
            if not timeout:
                failures = 0 if offset > start_offset else failures + 1
                if failures > MAX_RETRIES:
                    raise hub.explain_http_error(exc, spec.repo_id, spec.filename) from exc
                if cancel.wait(min(0.2 * failures, 2.0)):
                    raise _cancelled(name) from exc
    return offset
