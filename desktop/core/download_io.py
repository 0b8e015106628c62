"""The byte-level parts of a download: a streamed GET with the standard library (1 MiB reads,
no token sent across origins) and a writer thread that appends and hashes what arrives.
Used by :mod:`desktop.core.downloads`; no Qt."""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from desktop.core.errors import DownloadCancelled, DownloadError

CHUNK = 1 << 20  # largest piece read from the socket at once
READ_TIMEOUT_S = 1.0  # a socket read waits at most this long, so cancel is seen within ~1 s


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


@dataclass
class _Response:
    status: int
    headers: Any
    pieces: Iterator[bytes]


class _HTTPStatusError(Exception):
    """A 4xx/5xx answer to the byte GET, shaped like the library errors ``hub`` explains
    (``.response.status_code`` and ``.response.headers``)."""

    def __init__(self, code: int, headers: Any, url: str) -> None:
        super().__init__(f"HTTP {code} for {urlsplit(url).path}")
        self.response = _StatusResponse(code, headers)


@dataclass
class _StatusResponse:
    status_code: int
    headers: Any


def _ssl_context() -> Any:
    import ssl

    try:  # the CA bundle huggingface_hub's own client uses; a bundled app may lack system certs
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except (ImportError, OSError):
        return ssl.create_default_context()


def _opener() -> Any:
    import urllib.request

    class NoAuthAcrossOrigins(urllib.request.HTTPRedirectHandler):
        """Follow the Hub's redirect to its CDN without sending the token there."""

        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and not _same_origin(req.full_url, newurl):
                for h in ("Authorization", "authorization"):
                    new.remove_header(h)
                    new.unredirected_hdrs.pop(h, None)
            return new

    # ProxyHandler (HTTP(S)_PROXY, NO_PROXY) is part of every opener
    return urllib.request.build_opener(
        NoAuthAcrossOrigins, urllib.request.HTTPSHandler(context=_ssl_context())
    )


@contextlib.contextmanager
def _get(url: str, headers: dict[str, str]) -> Iterator[_Response]:
    """A streamed GET of the bytes with the standard library.

    The URL, the headers (auth, user agent) and the metadata come from huggingface_hub; the bytes
    come through ``http.client``, which reads the socket in 1 MiB pieces. huggingface_hub's own
    client (httpx/h11 in 1.x-2.x) reads 64 KiB at a time and copies each piece, which made
    downloads about half as fast as a plain copy over loopback (bench/bench_download.py).
    """
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers)
    try:
        r = _opener().open(req, timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        try:
            exc.read()
        except Exception:
            pass
        raise _HTTPStatusError(exc.code, exc.headers, url) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, BaseException):
            raise reason from exc
        raise ConnectionError(str(reason)) from exc
    try:

        def pieces() -> Iterator[bytes]:
            while True:
                data = r.read1(CHUNK)  # whatever has arrived, up to CHUNK
                if not data:
                    return
                yield data

        yield _Response(r.status, r.headers, pieces())
    finally:
        r.close()


class _Hashes:
    def __init__(self, size: int, git: bool) -> None:
        self.size = size
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(b"blob %d\0" % size) if git else None

    def reset(self) -> None:
        self.__init__(self.size, self.git is not None)  # type: ignore[misc]

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        if self.git is not None:
            self.git.update(data)


def _hash_existing(path: Path, hashes: _Hashes, n: int, cancel: threading.Event) -> None:
    with path.open("rb") as fh:
        left = n
        while left > 0:
            if cancel.is_set():
                raise DownloadCancelled(f"The download of {path.name} was paused: resume it later.")
            data = fh.read(min(8 * CHUNK, left))
            if not data:
                break
            hashes.update(data)
            left -= len(data)


class _Sink:
    """Writes pieces on its own thread while the caller hashes them, so disk, sha256 and the
    network overlap.

    ``put`` hands over a piece; ``restart`` (the server ignored Range) empties the file and the
    hashes; ``close`` writes what is queued, stops the thread and re-raises its error."""

    def __init__(self, fd: int, hashes: _Hashes, offset: int) -> None:
        self.fd = fd
        self.hashes = hashes
        self.written = offset
        self.error: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        os.lseek(fd, offset, os.SEEK_SET)
        self.thread = threading.Thread(target=self._run, name="download-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            piece = self.queue.get()
            if piece is None:
                return
            if self.error is not None:
                continue
            try:
                view = memoryview(piece)
                while view:
                    view = view[os.write(self.fd, view) :]
                self.written += len(piece)
            except BaseException as exc:  # reported by put()/close()
                self.error = exc

    def _check(self) -> None:
        if self.error is not None:
            raise DownloadError(
                f"Based could not write the download to disk ({self.error}): check the models "
                "folder and free space, then try again."
            ) from self.error

    def put(self, piece: bytes) -> None:
        self._check()
        # hash on the caller's thread (sha256 releases the GIL), write on the writer thread:
        # on two cores the network read, the hash and the disk write overlap
        self.hashes.update(piece)
        self.queue.put(piece)

    def _drain(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def restart(self) -> None:
        self._drain()
        self._check()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hashes.reset()
        self.written = 0
        self.thread = threading.Thread(target=self._run, name="download-writer", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._drain()
        self._check()
