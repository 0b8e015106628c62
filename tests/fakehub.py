"""A fake Hugging Face Hub on 127.0.0.1 for tests: standard library only.

It serves what the real ``huggingface_hub`` client asks for:

- ``GET /api/models?search=..&filter=..&sort=..&limit=..`` (model search),
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``?blobs=true`` adds sizes,
  blob ids and ``lfs: {sha256, size, pointerSize}`` to ``siblings``),
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (``HfApi.list_repo_tree``),
- ``GET /api/whoami-v2`` (token validation),
- ``HEAD``/``GET /{repo}/resolve/{rev}/{filename}`` with ``X-Repo-Commit``, ``ETag``,
  ``X-Linked-Etag``, ``X-Linked-Size``, ``Content-Length`` and ``Accept-Ranges``. Like the real
  Hub, LFS files answer ``302`` to a second server (the "CDN": ``localhost`` and another port, so
  another origin)
  that serves ``/blobs/{sha256}`` with byte ranges (``206`` + ``Content-Range``). No ``X-Xet-*``
  header is ever sent, so the client never tries Xet.

Knobs for tests (plain attributes, changeable while the server runs):

- ``requests``: every request as a :class:`Recorded` (method, path, query, Range header, server,
  Authorization header);
- ``fail(repo_id, status, filename=None)``: answer that status (401, 403 gated, 404, 5xx) with the
  Hub's ``X-Error-Code`` headers;
- ``stall_after = N``: bodies stop at file offset N and hang until the hub closes;
- ``drop_after = N`` with ``drops_left``: the connection is closed mid-body at file offset N;
- ``corrupt = True``: bodies differ from the advertised sha256 (same size); ``corrupt_blobs``: only
  the files with these sha256s do.

A split model is served like the real Hub serves one: each part is its own LFS file, often in a
subfolder (:func:`split_repo_files` lays out a split tiny model that way).

    with FakeHub({"org/repo": {"model-Q4_K_M.gguf": data}}) as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK = 1 << 20
_NON_LFS_SUFFIXES = (".md", ".json", ".txt", ".gitattributes", ".py", ".yaml", ".yml")
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
_DATE = "2025-01-15T10:00:00.000Z"


@dataclass(frozen=True)
class Recorded:
    """One request as the fake server saw it."""

    method: str
    path: str
    query: str
    range: str | None
    server: str  # "hub" or "cdn"
    authorization: str | None


@dataclass
class _File:
    data: bytes
    lfs: bool
    sha256: str
    git_sha1: str


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _make_file(name: str, data: bytes) -> _File:
    lfs = not name.lower().endswith(_NON_LFS_SUFFIXES)
    return _File(data, lfs, hashlib.sha256(data).hexdigest(), _git_blob_sha1(data))


class FakeHub:
    """A fake Hub (and its CDN) on two ephemeral ports of 127.0.0.1; a context manager."""

    def __init__(
        self,
        files: dict[str, dict[str, bytes]],
        *,
        cdn: bool = True,
        gated: dict[str, str] | None = None,
        private: dict[str, str] | None = None,
        tokens: dict[str, str] | None = None,
        meta: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``files``: repo id -> file name -> bytes. ``gated``: repo id -> "auto"/"manual" (shown
        in listings). ``private``: repo id -> the token that may read it (401 otherwise).
        ``tokens``: valid token -> display name (for ``/api/whoami-v2``). ``meta``: repo id ->
        {"downloads": .., "likes": ..} for search results. ``cdn=False`` serves LFS files from
        the hub itself (200, no redirect)."""
        self._lock = threading.Lock()
        self._repos: dict[str, dict[str, _File]] = {}
        self._commits: dict[str, str] = {}
        for repo_id, repo_files in files.items():
            for name, data in repo_files.items():
                self.set_file(repo_id, name, data)
        self.use_cdn = cdn
        self.gated = dict(gated or {})
        self.private = dict(private or {})
        self.tokens = dict(tokens or {})
        self.meta = dict(meta or {})
        self.requests: list[Recorded] = []
        self.failures: dict[tuple[str, str | None], int] = {}
        self.stall_after: int | None = None
        self.drop_after: int | None = None
        self.drops_left = 1
        self.corrupt = False
        self.corrupt_blobs: set[str] = set()
        self._closing = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []

    # ----- test helpers -------------------------------------------------------------------------

    def set_file(self, repo_id: str, filename: str, data: bytes) -> None:
        """Add or replace a file; the repo gets a new commit."""
        with self._lock:
            self._repos.setdefault(repo_id, {})[filename] = _make_file(filename, data)
            h = hashlib.sha1(repo_id.encode())
            for name in sorted(self._repos[repo_id]):
                h.update(name.encode() + b"\0" + self._repos[repo_id][name].sha256.encode())
            self._commits[repo_id] = h.hexdigest()

    def commit(self, repo_id: str) -> str:
        return self._commits[repo_id]

    def sha256(self, repo_id: str, filename: str) -> str:
        return self._repos[repo_id][filename].sha256

    def fail(self, repo_id: str, status: int, filename: str | None = None) -> None:
        """Answer ``status`` for that repo (every endpoint) or only for that file's downloads."""
        self.failures[(repo_id, filename)] = status

    def clear_failures(self) -> None:
        self.failures.clear()

    def requests_for(self, method: str | None = None, *, contains: str = "") -> list[Recorded]:
        return [
            r
            for r in list(self.requests)
            if (method is None or r.method == method) and contains in r.path
        ]

    @property
    def endpoint(self) -> str:
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_endpoint(self) -> str:
        """Another host name (and port) for the same loopback address: a different origin, as a
        real CDN is, so huggingface_hub stops at the redirect and must not forward the token."""
        port = self._servers[1].server_address[1]
        return f"http://localhost:{port}"

    # ----- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            handler = type(f"_{role.title()}Handler", (_Handler,), {"hub": self, "role": role})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            thread = threading.Thread(
                target=server.serve_forever, args=(0.05,), name=f"fakehub-{role}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def close(self) -> None:
        self._closing.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- server side --------------------------------------------------------------------------

    def _repo_json(self, repo_id: str, *, blobs: bool) -> dict[str, Any]:
        files = self._repos[repo_id]
        siblings: list[dict[str, Any]] = []
        for name in sorted(files):
            f = files[name]
            entry: dict[str, Any] = {"rfilename": name}
            if blobs:
                entry["size"] = len(f.data)
                entry["blobId"] = f.git_sha1
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}
            siblings.append(entry)
        meta = self.meta.get(repo_id, {})
        has_gguf = any(n.endswith(".gguf") for n in files)
        return {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": self._commits[repo_id],
            "lastModified": meta.get("lastModified", _DATE),
            "createdAt": _DATE,
            "private": repo_id in self.private,
            "gated": self.gated.get(repo_id, False),
            "disabled": False,
            "downloads": meta.get("downloads", 0),
            "likes": meta.get("likes", 0),
            "library_name": "gguf" if has_gguf else None,
            "tags": ["gguf"] if has_gguf else [],
            "siblings": siblings,
        }


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    role: str
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    # ----- plumbing -----------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        hub = self.hub
        hub.requests.append(
            Recorded(
                method,
                path,
                url.query,
                self.headers.get("Range"),
                self.role,
                self.headers.get("Authorization"),
            )
        )
        query = parse_qs(url.query)
        try:
            if self.role == "cdn":
                m = re.fullmatch(r"/blobs/([0-9a-f]{64})", path)
                if not m:
                    return self._send_error(404, "EntryNotFound", "Not found")
                for repo_files in hub._repos.values():
                    for f in repo_files.values():
                        if f.sha256 == m.group(1):
                            return self._send_body(method, f, {"ETag": f'"{f.sha256}"'})
                return self._send_error(404, "EntryNotFound", "Not found")
            if path == "/api/whoami-v2":
                return self._whoami()
            if path == "/api/models":
                return self._search(query)
            if path.startswith("/api/models/"):
                return self._api_model(path[len("/api/models/") :], query)
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m:
                return self._resolve(method, m.group(1), m.group(2), m.group(3))
            self._send_error(404, None, "Not found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send_json({"error": message}, status, headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    def _check_repo(self, repo_id: str, filename: str | None) -> bool:
        """False (after answering) when the request must fail."""
        hub = self.hub
        status = hub.failures.get((repo_id, filename)) if filename else None
        if status is None:
            status = hub.failures.get((repo_id, None))
        if status is not None:
            self._send_status(status, repo_id, filename)
            return False
        if repo_id not in hub._repos:
            if self._token():
                self._send_error(404, "RepoNotFound", "Repository not found")
            else:
                self._send_error(401, "RepoNotFound", "Invalid username or password.")
            return False
        if repo_id in hub.private and self._token() != hub.private[repo_id]:
            self._send_error(401, "RepoNotFound", "Invalid username or password.")
            return False
        return True

    def _send_status(self, status: int, repo_id: str, filename: str | None) -> None:
        if status == 401:
            self._send_error(401, "RepoNotFound", "Invalid username or password.")
        elif status == 403:
            self._send_error(
                403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo_id} to ask for access.",
            )
        elif status == 404:
            if filename:
                self._send_error(404, "EntryNotFound", f"{filename} does not exist")
            else:
                self._send_error(404, "RepoNotFound", "Repository not found")
        else:
            self._send_error(status, None, "Internal Error - We're working hard to fix this")

    # ----- API ----------------------------------------------------------------------------------

    def _whoami(self) -> None:
        token = self._token()
        if token is None or token not in self.hub.tokens:
            return self._send_error(401, None, "Invalid credentials in Authorization header")
        self._send_json(
            {
                "type": "user",
                "name": "tester",
                "fullname": "Test User",
                "auth": {"type": "access_token", "accessToken": {"displayName": self.hub.tokens[token], "role": "read"}},
            }
        )

    def _search(self, query: dict[str, list[str]]) -> None:
        hub = self.hub
        text = (query.get("search") or [""])[0].lower()
        filters = query.get("filter") or []
        out = []
        for repo_id in sorted(hub._repos):
            if repo_id in hub.private:
                continue
            info = hub._repo_json(repo_id, blobs=False)
            if text and text not in repo_id.lower():
                continue
            if any(f not in info["tags"] and f != info["library_name"] for f in filters):
                continue
            del info["siblings"]
            out.append(info)
        if (query.get("sort") or [""])[0] in ("downloads", "likes"):
            key = query["sort"][0]
            out.sort(key=lambda i: (-int(i[key]), i["id"]))
        limit = int((query.get("limit") or ["1000"])[0])
        self._send_json(out[:limit])

    def _api_model(self, rest: str, query: dict[str, list[str]]) -> None:
        parts = rest.split("/")
        if len(parts) < 2:
            return self._send_error(404, "RepoNotFound", "Repository not found")
        repo_id = "/".join(parts[:2])
        tail = parts[2:]
        if not self._check_repo(repo_id, None):
            return
        rev = "main"
        kind = "info"
        if tail and tail[0] in ("revision", "tree") and len(tail) >= 2:
            kind, rev = tail[0], tail[1]
        elif tail:
            return self._send_error(404, None, "Not found")
        if rev not in ("main", self.hub.commit(repo_id)):
            return self._send_error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if kind == "tree":
            prefix = "/".join(tail[2:])
            return self._tree(repo_id, prefix, (query.get("recursive") or ["false"])[0] == "true")
        blobs = (query.get("blobs") or ["false"])[0].lower() == "true"
        self._send_json(self.hub._repo_json(repo_id, blobs=blobs))

    def _tree(self, repo_id: str, prefix: str, recursive: bool) -> None:
        files = self.hub._repos[repo_id]
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for name in sorted(files):
            if not name.startswith(base):
                continue
            rel = name[len(base) :]
            if "/" in rel and not recursive:
                dirs.add(base + rel.split("/")[0])
                continue
            if recursive:
                segs = name.split("/")[:-1]
                for i in range(len(base.rstrip("/").split("/")) if base else 0, len(segs)):
                    dirs.add("/".join(segs[: i + 1]))
            f = files[name]
            entry: dict[str, Any] = {"type": "file", "oid": f.git_sha1, "size": len(f.data), "path": name}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            entries.append(entry)
        folder_entries = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(dirs)
        ]
        self._send_json(folder_entries + entries)

    # ----- files --------------------------------------------------------------------------------

    def _resolve(self, method: str, repo_id: str, rev: str, filename: str) -> None:
        hub = self.hub
        if not self._check_repo(repo_id, filename):
            return
        if rev not in ("main", hub.commit(repo_id)):
            return self._send_error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        f = hub._repos[repo_id].get(filename)
        if f is None:
            return self._send_error(404, "EntryNotFound", f"{filename} does not exist")
        headers = {"X-Repo-Commit": hub.commit(repo_id)}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(len(f.data))
            if hub.use_cdn:
                location = f"{hub.cdn_endpoint}/blobs/{f.sha256}?sig={quote(repo_id, safe='')}"
                body = f"Found. Redirecting to {location}".encode()
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("ETag", f'"{f.git_sha1}"')
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body)
                return
            headers["ETag"] = f'"{f.sha256}"'
        else:
            headers["ETag"] = f'"{f.git_sha1}"'
        self._send_body(method, f, headers)

    def _send_body(self, method: str, f: _File, headers: dict[str, str]) -> None:
        hub = self.hub
        data = f.data
        if (hub.corrupt or f.sha256 in hub.corrupt_blobs) and data:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
        size = len(data)
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng:
            m = _RANGE_RE.match(rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method == "HEAD":
            return
        view = memoryview(data)
        pos = start
        stop = end + 1
        drop_at: int | None = None
        with hub._lock:
            if hub.drop_after is not None and hub.drops_left > 0 and hub.drop_after < stop:
                hub.drops_left -= 1
                drop_at = max(start, hub.drop_after)
        stall_at = hub.stall_after if hub.stall_after is not None and hub.stall_after < stop else None
        limit = min(x for x in (stop, drop_at, stall_at) if x is not None)
        while pos < limit:
            n = min(CHUNK, limit - pos)
            self.wfile.write(view[pos : pos + n])
            pos += n
        if pos >= stop:
            return
        self.wfile.flush()
        if drop_at is not None and pos == drop_at:
            self.close_connection = True
            return
        # Stalled: keep the connection open, send nothing, until the hub closes.
        while not hub._closing.wait(0.05):
            pass
        self.close_connection = True


def split_repo_files(first_part: Any, folder: str = "") -> dict[str, bytes]:
    """Repo file name -> bytes for every part of the split model whose part 1 is ``first_part``
    (a local path), under ``folder`` in the repo ("Q4_K_M" gives ``Q4_K_M/<name>-0000k-of-0000n.gguf``)."""
    from pathlib import Path

    from desktop.core.gguf_split import model_parts

    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    return {prefix + p.name: p.read_bytes() for p in model_parts(Path(first_part))}


def use_hub(monkeypatch: Any, tmp_path: Any, hub: FakeHub) -> None:
    """Point the real huggingface_hub client at ``hub`` for one test (pytest's monkeypatch).

    Online (HF_HUB_OFFLINE removed), HF_ENDPOINT set, no token from the machine: HF_TOKEN is
    removed and huggingface_hub's token files (paths fixed at its import) move to ``tmp_path``."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-token" / "token"))
    monkeypatch.setattr(
        constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-token" / "stored_tokens")
    )


def serve_forever_in_process(path: str, repo_id: str, filename: str, conn: Any) -> None:
    """Run a FakeHub serving one file read from ``path`` until ``conn`` (a Pipe end) is closed.

    Used by the benchmark to keep the server out of the measuring process's GIL."""
    with open(path, "rb") as fh:
        data = fh.read()
    with FakeHub({repo_id: {filename: data}}) as hub:
        conn.send(hub.endpoint)
        try:
            conn.recv()
        except EOFError:
            pass
        time.sleep(0)
