"""Every string a user can read, in plain words: no environment variable, exception name, Python
byte string or traceback (issue 13.5).

Three nets: a scan of the sources' prose strings; a scan of every ``except`` block for an
unexpected exception's own text reaching a message; and the messages the error paths really
produce (files, the hub, settings, catalog, comparison files, the CLI)."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import desktop
from desktop.core.errors import BasedError, plain_reason
from tests.plainwords import jargon

ROOT = Path(desktop.__file__).parent
# the self-test is a diagnostic for whoever installs Based (packagers, CI): it names what failed
# inside Python on purpose. tinymodel builds test models. Neither talks to a user of the window.
NOT_FOR_USERS = {"selftest.py", "core/tinymodel.py", "__main__.py"}
# strings with a space that are not messages: (file, text) -> why
NOT_MESSAGES = {("core/llama_vocab.py", "AMX_INT8 = 1"): "a key of llama.cpp's system info"}


def sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel not in NOT_FOR_USERS:
            yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def prose(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every string literal that reads as words (has a space), f-strings' literal parts joined
    with a placeholder; docstrings are not shown to users."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str)
                           else "{}" for v in node.values)
            for v in node.values:
                skip.add(id(v))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        else:
            continue
        if " " in text.strip():
            yield node.lineno, text


def test_the_checker_finds_each_kind() -> None:
    assert jargon("set HF_HUB_OFFLINE=1 to work offline")
    assert jargon("failed (ConnectTimeoutError): try again")
    assert jargon("it starts with b'hell'")
    assert jargon("Traceback (most recent call last):")
    assert jargon("[Errno 2] No such file")
    for fine in ("Q4_K_M and Q8_0 files", "Error: the file is empty.", "IQ4_XS", "the web's URL",
                 "an error page", "Based's settings"):
        assert jargon(fine) == [], fine


def test_no_prose_string_in_the_sources_holds_jargon() -> None:
    bad = []
    for rel, tree in sources():
        for line, text in prose(tree):
            if (rel, text) in NOT_MESSAGES:
                continue
            for hit in jargon(text):
                bad.append(f"{rel}:{line}: {hit} in {text[:90]!r}")
    assert bad == [], "\n".join(bad)


def _user_error_names() -> set[str]:
    for mod in pkgutil.walk_packages([str(ROOT)], "desktop."):
        if mod.name.startswith(("desktop.ui", "desktop.workers", "desktop.selftest",
                                "desktop.__main__")):
            continue
        importlib.import_module(mod.name)
    names, todo = set(), [BasedError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def _handler_types(handler: ast.ExceptHandler) -> list[str]:
    t = handler.type
    elts = t.elts if isinstance(t, ast.Tuple) else [t] if t is not None else []
    # only a bare name can be one of ours (jinja2.exceptions.TemplateError is not)
    return [e.id if isinstance(e, ast.Name) else ast.unparse(e) for e in elts]


def _text_uses(body: list[ast.stmt], name: str) -> list[int]:
    """Lines where ``name`` becomes text: ``str(name)``, ``repr(name)``, ``f"{name}"``."""
    def is_name(n: ast.expr) -> bool:
        return isinstance(n, ast.Name) and n.id == name

    lines = []
    for stmt in body:
        for node in ast.walk(stmt):
            formatted = isinstance(node, ast.FormattedValue) and is_name(node.value)
            converted = (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                         and node.func.id in ("str", "repr", "format") and bool(node.args)
                         and is_name(node.args[0]))
            if formatted or converted:
                lines.append(node.lineno)
    return lines


def test_an_unexpected_exceptions_own_text_never_reaches_a_message() -> None:
    """``except OSError as exc: ... f"({exc})"`` shows "[Errno 28] ..." or worse; only Based's
    own errors (one plain sentence each) may be shown as they are. Others go through
    ``plain_reason``, or their ``strerror``."""
    ours = _user_error_names()
    bad = []
    for rel, tree in sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ExceptHandler) or node.name is None:
                continue
            types = _handler_types(node)
            if types and all(t in ours for t in types):
                continue
            for line in _text_uses(node.body, node.name):
                bad.append(f"{rel}:{line}: the text of {'/'.join(types) or 'any exception'}")
    assert bad == [], "\n".join(bad)


def test_no_f_string_shows_a_type_name() -> None:
    bad = []
    for rel, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.FormattedValue) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "__name__":
                bad.append(f"{rel}:{node.lineno}")
    assert bad == [], "\n".join(bad)


# -- the messages the error paths really produce ------------------------------------------------


def _assert_plain(messages: list[str]) -> None:
    assert messages
    bad = [(m, jargon(m)) for m in messages if jargon(m)]
    assert bad == [], bad


def test_plain_reason_words() -> None:
    assert plain_reason(OSError(28, "No space left on device")) == "no space left on device"
    assert plain_reason(RuntimeError("NoneType object at 0x7f")) == "something went wrong inside Based"
    assert plain_reason(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")) == (
        "the text is not in the UTF-8 encoding")
    _assert_plain([plain_reason(e) for e in (KeyError("x"), ValueError("b'x'"), MemoryError())])


FILES = {
    "empty.gguf": b"",
    "hello.gguf": b"hello world, this is text",
    "page.gguf": b"<!DOCTYPE html><html><body>Not found</body></html>",
    "zip.gguf": b"PK\x03\x04" + bytes(200),
    "binary.gguf": bytes(range(256)) * 2,
    "trunc.gguf": b"GG",
    "header.gguf": b"GGUF\x03\x00\x00\x00" + b"\xff" * 9,
    "version.gguf": b"GGUF\x63\x00\x00\x00" + bytes(16),
}


def test_model_file_errors_are_plain(tmp_path: Path) -> None:
    from desktop.core.gguf_info import read_gguf, validate_gguf

    messages = []
    for name, data in FILES.items():
        p = tmp_path / name
        p.write_bytes(data)
        for fn in (read_gguf, validate_gguf):
            with pytest.raises(BasedError) as err:
                fn(p)
            messages.append(str(err.value))
    with pytest.raises(BasedError) as err:
        read_gguf(tmp_path / "missing.gguf")
    messages.append(str(err.value))
    _assert_plain(messages)
    joined = " ".join(messages)
    assert "web page" in joined and "zip" in joined and "looks like text" in joined


def test_hub_errors_are_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2
    from huggingface_hub import errors as hf_errors

    from desktop.core import hub

    class Response:
        def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.status_code, self.headers = status, headers or {}
            self.request = None
            self.url = "https://huggingface.co/api/models/acme/x"

        def json(self) -> dict[str, str]:
            return {"error": "KeyError b'x'"}

    def http(status: int, **headers: str) -> Exception:
        e = RuntimeError("HTTPStatusError 500 b'oops'")
        e.response = Response(status, headers)  # type: ignore[attr-defined]
        return e

    errors: list[BaseException] = [
        OSError(101, "Network is unreachable"), ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"), RuntimeError("KeyError: 'x' b'\\x00'"), ValueError(),
        httpx2.ConnectError("[Errno -2] Name or service not known"),
        httpx2.ReadTimeout("timed out"), httpx2.RemoteProtocolError("peer closed"),
        *(http(s) for s in (401, 403, 404, 416, 429, 500, 503, 418)),
        http(401, **{"X-Error-Message": "Invalid credentials in Authorization header"}),
        http(403, **{"X-Error-Code": "GatedRepo"}),
    ]
    for name in ("GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError",
                 "EntryNotFoundError", "OfflineModeIsEnabled"):
        cls = getattr(hf_errors, name, None)
        if cls is not None:
            try:
                errors.append(cls("ModelInfoError b'x'", response=Response(404)))  # type: ignore[call-arg]
            except TypeError:
                errors.append(cls("ModelInfoError b'x'"))
    messages = [str(hub.explain_http_error(e, "acme/x", "f.gguf")) for e in errors]
    messages += [str(hub.explain_http_error(e, "")) for e in errors]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    messages += [str(hub.offline_error("search")), str(hub.unreachable_error("search"))]
    _assert_plain(messages)


def test_settings_catalog_and_comparison_file_errors_are_plain(tmp_path: Path) -> None:
    from desktop.core import settings as settings_mod
    from desktop.core.catalog import CatalogError, parse_catalog
    from desktop.core.export import load_json
    from desktop.core.paths import read_user_text

    messages = []
    f = tmp_path / "settings.json"
    for raw in ("{ not json", json.dumps({"top_p": 1.5, "seed": "x", "n_ctx": -1, "preset": "??"}),
                json.dumps({"base_mode": "urial"})):
        f.write_text(raw, encoding="utf-8")
        messages.append(settings_mod.load(f).message or "")
    for data in (None, {"pairs": [1]}, {"pairs": [{"id": "x"}]},
                 {"pairs": [{"id": "x", "family": 3, "params": "1", "licence": "l"}]}):
        with pytest.raises(CatalogError) as err:
            parse_catalog(data)
        messages.append(str(err.value))
    for text in ("{", "[]", json.dumps({"format": "based-comparison", "format_version": 1}),
                 json.dumps({"format": "based-comparison", "format_version": 99})):
        with pytest.raises(BasedError) as err:
            load_json(text)
        messages.append(str(err.value))
    bad = tmp_path / "prompts.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(BasedError) as err:
        read_user_text(bad, "prompt")
    messages.append(str(err.value))
    _assert_plain(messages)


def _based(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "BASED_DEBUG"}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "desktop", *args], capture_output=True, text=True,
                          timeout=120, env=e)


def test_cli_error_paths_are_plain(tmp_path: Path) -> None:
    from tests.fakehub import FakeHub

    text = tmp_path / "notes.gguf"
    text.write_text("hello", encoding="utf-8")
    with FakeHub({}) as closed:
        endpoint = closed.endpoint  # closed: its port refuses connections
    runs = [
        _based("inspect", str(text)),
        _based("inspect", str(tmp_path / "missing.gguf")),
        _based("compare", "--base", str(text), "--instruct", str(text), "--user", "hi"),
        _based("compare", "--base", "x", "--instruct", "y", "--user", "hi", "--top-p", "7"),
        _based("models", "search", "qwen", env={"HF_ENDPOINT": endpoint}),
        _based("models", "search", "qwen", env={"HF_HUB_OFFLINE": "1"}),
        _based("models", "download", "acme/x", "f.gguf", env={"HF_ENDPOINT": endpoint}),
        _based("rerun", str(text)),
    ]
    for r in runs:
        assert r.returncode != 0, r.args
        err = r.stderr.strip()
        assert err.startswith("based: ") and "\n" not in err, (r.args, err)
        _assert_plain([err])
