"""Browsing Hugging Face for GGUF files, over the real ``huggingface_hub`` client. No Qt here.

- :func:`search_gguf_repos` and :func:`list_gguf_files` for the "any repo" browser;
- :func:`explain_http_error` turns any failure into a :class:`DownloadError` whose text is one
  plain sentence saying what to do (also used by :mod:`desktop.core.downloads`);
- :func:`save_token`, :func:`current_token`, :func:`forget_token` use huggingface_hub's own token
  store; the token is never written to Based's settings.

``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read when each function runs (huggingface_hub reads
them once, at import), so the endpoint is always passed explicitly.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from desktop.core.errors import DownloadError
from desktop.core.gguf_split import display_name, group_model_files, model_quant

DEFAULT_ENDPOINT = "https://huggingface.co"
SITE = "https://huggingface.co"
TOKENS_PAGE = "https://huggingface.co/settings/tokens"
API_TIMEOUT_S = 15.0
# How long Based waits to learn whether Hugging Face can be reached at all before a request. With
# no network, huggingface_hub retries a failed connection five times over about 24 s in silence.
PROBE_TIMEOUT_S = 3.0

_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class RepoHit:
    """One search result: a model repo holding GGUF files."""

    repo_id: str
    downloads: int
    likes: int
    gated: bool
    updated: datetime | None


@dataclass(frozen=True)
class RemoteFile:
    """One GGUF model in a repo, as the Hub lists it: one file, or a split model as one entry.

    For a split model ``filename`` is part 1, ``size`` the total (None if a part's size is
    unknown), ``sha256`` None, and ``part_files``/``part_sizes``/``part_sha256`` describe the parts
    the repo holds, in order; ``missing_parts`` are the 1-based numbers of parts it lacks.
    """

    repo_id: str
    filename: str
    size: int | None
    quant: str | None
    sha256: str | None
    revision: str | None  # the commit the listing came from
    parts: int = 1
    part_files: tuple[str, ...] = ()
    part_sizes: tuple[int | None, ...] = ()
    part_sha256: tuple[str | None, ...] = ()
    missing_parts: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """``Q4_K_M/Model-Q4_K_M (3 parts)`` for a split model, else the file name."""
        return display_name(self.filename)


# ----- environment ----------------------------------------------------------------------------


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as it is set right now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` as it is set right now, else https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def licence_url(repo_id: str) -> str:
    """The page where a gated repo's licence is accepted."""
    return f"{SITE}/{repo_id}"


def offline_error(what: str = "reach Hugging Face") -> DownloadError:
    """Hugging Face's offline mode is on for this computer (``HF_HUB_OFFLINE``)."""
    return DownloadError(
        f"You are offline: Hugging Face's offline mode is switched on for this computer, so Based "
        f"did not {what}. The models already on this computer still work; switch offline mode "
        "off to search or download."
    )


def unreachable_error(what: str = "reach Hugging Face") -> DownloadError:
    """No connection to the Hub at all (no network, no DNS, or the server refuses)."""
    host = urlsplit(hub_endpoint()).hostname or "huggingface.co"
    return DownloadError(
        f"You seem to be offline: this computer cannot reach {host}, so Based did not {what}. "
        "The models already on this computer still work; connect to the internet and try again "
        "to search or download."
    )


def probe_target(endpoint: str | None = None) -> tuple[str, int]:
    """The host and port a request to ``endpoint`` first connects to: the endpoint itself, or
    the proxy the environment names for its scheme (``urllib.request.getproxies``)."""
    parts = urlsplit(endpoint or hub_endpoint())
    scheme = parts.scheme or "https"
    host = parts.hostname or "huggingface.co"
    port = parts.port or (443 if scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return host, port


def reachable(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout_s`` (name lookup
    included: it runs on a daemon thread, so a lookup that hangs cannot hold the caller)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except (OSError, ValueError):
            result.append(False)

    t = threading.Thread(target=attempt, name="hub-probe", daemon=True)
    t.start()
    t.join(timeout_s)
    return bool(result and result[0])


def quiet_hub_logging() -> None:
    """huggingface_hub logs every retry ("Retrying in 1s [Retry 1/5]") as a warning, which
    Python prints on stderr; Based says what happened in one sentence instead."""
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def prepare_client(what: str = "reach Hugging Face") -> None:
    """Refuse when offline, or when the Hub cannot be reached within :data:`PROBE_TIMEOUT_S`;
    otherwise make huggingface_hub agree with the environment now.

    huggingface_hub caches HF_HUB_OFFLINE at import (and 0.x mounts an offline adapter on its
    session), so a flag changed since then is copied in and the shared session is reset.
    """
    if offline_mode():
        raise offline_error(what)
    quiet_hub_logging()
    if not reachable(*probe_target()):
        raise unreachable_error(what)
    from huggingface_hub import constants
    from huggingface_hub import utils as hf_utils

    if constants.HF_HUB_OFFLINE:
        constants.HF_HUB_OFFLINE = False
        reset = getattr(hf_utils, "close_session", None) or getattr(hf_utils, "reset_sessions", None)
        if reset is not None:
            reset()


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), library_name="based")


def supported_kwargs(fn: Any, **kwargs: Any) -> dict[str, Any]:
    """Only the keyword arguments ``fn`` accepts (they vary across huggingface_hub versions)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


# ----- browsing -------------------------------------------------------------------------------


def search_gguf_repos(text: str, limit: int = 30) -> list[RepoHit]:
    """Model repos with GGUF files whose name contains ``text``, most downloaded first."""
    prepare_client("search Hugging Face")
    api = _api()
    kwargs = supported_kwargs(
        api.list_models,
        search=text.strip() or None,
        filter="gguf",
        sort="downloads",
        direction=-1,
        limit=limit,
        expand=["downloads", "likes", "gated", "lastModified"],
    )
    try:
        models = list(api.list_models(**kwargs))
    except Exception as exc:
        raise explain_http_error(exc, "") from exc
    hits = []
    for m in models[:limit]:
        updated = getattr(m, "last_modified", None) or getattr(m, "lastModified", None)
        hits.append(
            RepoHit(
                repo_id=m.id,
                downloads=int(getattr(m, "downloads", 0) or 0),
                likes=int(getattr(m, "likes", 0) or 0),
                gated=bool(getattr(m, "gated", False)),
                updated=updated if isinstance(updated, datetime) else None,
            )
        )
    return hits


def _lfs_sha256(lfs: Any) -> str | None:
    if lfs is None:
        return None
    sha = getattr(lfs, "sha256", None)
    if sha is None and isinstance(lfs, dict):
        sha = lfs.get("sha256") or lfs.get("oid")
    return str(sha).lower() if sha else None


def list_gguf_files(repo_id: str, revision: str | None = None) -> list[RemoteFile]:
    """The repo's ``.gguf`` models with size, quantization and LFS sha256, smallest first; the
    parts of a split model (also in subfolders) are one entry with their total size."""
    prepare_client("list the files of " + repo_id)
    api = _api()
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=API_TIMEOUT_S)
    except Exception as exc:
        raise explain_http_error(exc, repo_id) from exc
    sizes: dict[str, int | None] = {}
    shas: dict[str, str | None] = {}
    for s in info.siblings or []:
        name = s.rfilename
        if not name.lower().endswith(".gguf"):
            continue
        lfs = getattr(s, "lfs", None)
        size = getattr(s, "size", None)
        if size is None and lfs is not None:
            size = getattr(lfs, "size", None)
        sizes[name] = int(size) if size is not None else None
        shas[name] = _lfs_sha256(lfs)
    commit = getattr(info, "sha", None) or revision
    files = []
    for model in group_model_files(sizes):
        part_sizes = tuple(sizes[f] for f in model.files)
        known = [n for n in part_sizes if n is not None]
        split = model.split_count > 1
        files.append(
            RemoteFile(
                repo_id=repo_id,
                filename=model.name,
                size=sum(known) if len(known) == len(part_sizes) else None,
                quant=model_quant(model.name) or None,
                sha256=None if split else shas[model.name],
                revision=commit,
                parts=model.split_count,
                part_files=model.files if split else (),
                part_sizes=part_sizes if split else (),
                part_sha256=tuple(shas[f] for f in model.files) if split else (),
                missing_parts=model.missing,
            )
        )
    files.sort(key=lambda f: (f.size if f.size is not None else -1, f.filename))
    return files


# ----- errors ---------------------------------------------------------------------------------


def _class_names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _header(exc: BaseException, name: str) -> str:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    try:
        return str(headers.get(name) or "") if headers is not None else ""
    except Exception:
        return ""


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


_REFUSED_NAMES = {
    "ConnectError",
    "NewConnectionError",
    "NameResolutionError",
    "gaierror",
    "ConnectionRefusedError",
    "ProxyError",
    "SSLError",
}
_TIMEOUT_NAMES = {"TimeoutException", "Timeout", "TimeoutError", "ReadTimeoutError", "timeout"}
_DROPPED_NAMES = {
    "RemoteProtocolError",
    "ChunkedEncodingError",
    "ProtocolError",
    "IncompleteRead",
    "ReadError",
    "ConnectionResetError",
    "ContentDecodingError",
}
_NETWORK_NAMES = {"ConnectionError", "MaxRetryError", "NetworkError", "TransportError"}


def classify_network_error(exc: BaseException) -> str | None:
    """"refused" (no connection: DNS, refused, proxy, TLS), "timeout", "dropped" (closed
    mid-body) or "network" (other transport trouble); None for anything else.

    Judged by class names along the exception chain, so requests/urllib3 (huggingface_hub 0.x),
    httpx (1.x) and httpx2 (2.x) are all understood. Refusals come first: urllib3's
    NewConnectionError is also a ConnectTimeoutError."""
    chain = [_class_names(e) for e in _chain(exc)]
    for kind, names in (
        ("refused", _REFUSED_NAMES),
        ("timeout", _TIMEOUT_NAMES),
        ("dropped", _DROPPED_NAMES),
        ("network", _NETWORK_NAMES),
    ):
        if any(n & names for n in chain):
            return kind
    return None


def explain_http_error(
    exc: BaseException, repo_id: str, filename: str | None = None
) -> DownloadError:
    """One plain sentence, saying what to do, for any failure talking to the Hub."""
    if isinstance(exc, DownloadError):
        return exc
    names = _class_names(exc)
    what = f"{filename} from {repo_id}" if filename and repo_id else (repo_id or "Hugging Face")
    status = _status(exc)
    error_message = _header(exc, "X-Error-Message")
    if "OfflineModeIsEnabled" in names:
        return offline_error()
    if "GatedRepoError" in names or _header(exc, "X-Error-Code") == "GatedRepo":
        name = repo_id or "This repo"
        return DownloadError(
            f"{name} is gated: open {licence_url(repo_id) if repo_id else SITE} while logged in, "
            "accept its licence, then paste a Hugging Face access token in Settings and try again."
        )
    if "RevisionNotFoundError" in names:
        return DownloadError(
            f"{repo_id} has no such branch or commit on Hugging Face: refresh the file list and "
            "pick a file again."
        )
    if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return DownloadError(
            f"{repo_id} has no file named {filename or 'like that'} any more: refresh the file "
            "list and pick another."
        )
    if status == 401 and "Invalid credentials" in error_message:
        return DownloadError(
            f"Hugging Face refused your access token: create a new read token at {TOKENS_PAGE} "
            "and paste it in Settings."
        )
    if "RepositoryNotFoundError" in names or status == 401:
        if status == 401 or status is None:
            return DownloadError(
                f"Hugging Face did not find {repo_id or 'that repo'}, or it is private: check the "
                "name, and if you have access, paste a Hugging Face access token in Settings."
            )
        return DownloadError(
            f"There is no repo named {repo_id or 'like that'} on Hugging Face: check the name "
            "and try again."
        )
    if status == 403:
        return DownloadError(
            f"Hugging Face refused access to {what}: check that your access token may read this "
            "repo, or paste another token in Settings."
        )
    if status == 404:
        return DownloadError(
            f"Hugging Face has no {what}: check the repo and file names, or refresh the file list."
        )
    if status == 416:
        return DownloadError(
            f"Hugging Face refused to continue {what} where it stopped: discard the partial "
            "download and start it again."
        )
    if status == 429:
        return DownloadError(
            "Hugging Face is limiting how fast you can download: wait a few minutes and try again."
        )
    if status is not None and 500 <= status < 600:
        return DownloadError(
            f"Hugging Face had a server error ({status}) for {what}: try again in a few minutes."
        )
    if status is not None and status >= 400:
        return DownloadError(f"Hugging Face answered {status} for {what}: try again later.")
    kind = classify_network_error(exc)
    if kind == "timeout":
        return DownloadError(
            f"Hugging Face did not answer in time for {what}: check your internet connection and "
            "try again; a download continues where it stopped."
        )
    if kind == "dropped":
        return DownloadError(
            f"The connection dropped while fetching {what}: try again and the download "
            "continues where it stopped."
        )
    if kind in ("refused", "network") or isinstance(exc, OSError):
        return unreachable_error(f"fetch {what}" if repo_id else "reach Hugging Face")
    return DownloadError(
        f"Talking to Hugging Face about {what} went wrong in a way Based did not expect: try "
        "again later."
    )


# ----- token ----------------------------------------------------------------------------------


def current_token() -> str | None:
    """The token huggingface_hub would send (``HF_TOKEN`` or its token file), or None."""
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception:
        return None
    return token or None


def save_token(token: str) -> str:
    """Check ``token`` with the Hub and store it in huggingface_hub's token store.

    Returns the account name. Raises :class:`DownloadError` when the Hub refuses it."""
    token = token.strip()
    if not token:
        raise DownloadError(f"Paste a Hugging Face access token (create one at {TOKENS_PAGE}).")
    prepare_client("check the access token")
    try:
        info = _api().whoami(token=token)
    except Exception as exc:
        if _status(exc) == 401:
            raise DownloadError(
                f"Hugging Face refused this access token: copy a read token from {TOKENS_PAGE} "
                "and paste it again."
            ) from exc
        raise explain_http_error(exc, "") from exc
    access = (info.get("auth") or {}).get("accessToken") or {}
    token_name = str(access.get("displayName") or "based")
    try:
        from huggingface_hub._login import _set_active_token
        from huggingface_hub.utils._auth import _save_token

        _save_token(token=token, token_name=token_name)
        _set_active_token(token_name=token_name, add_to_git_credential=False)
    except ImportError:  # pragma: no cover - layout of other huggingface_hub versions
        from huggingface_hub import login

        login(token=token, add_to_git_credential=False)
    return str(info.get("name") or token_name)


def forget_token() -> None:
    """Remove the stored token(s) from huggingface_hub's token store."""
    from huggingface_hub import logout

    try:
        logout()
    except Exception:
        pass
