"""Browsing Hugging Face: the real huggingface_hub client against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from desktop.core import hub as hubmod
from desktop.core.downloads import DownloadSpec, download
from desktop.core.errors import DownloadError
from desktop.core.hub import (
    RemoteFile,
    current_token,
    explain_http_error,
    forget_token,
    list_gguf_files,
    save_token,
    search_gguf_repos,
)
from tests.fakehub import FakeHub, use_hub

Q4 = b"q4" * 5000
Q8 = b"q8" * 9000
F16 = b"f16" * 12000
FILES = {
    "acme/SmolThing-135M-Instruct-GGUF": {
        "SmolThing-135M-Instruct-Q8_0.gguf": Q8,
        "SmolThing-135M-Instruct-Q4_K_M.gguf": Q4,
        "sub/SmolThing-135M-Instruct-f16.gguf": F16,
        "README.md": b"# card\n",
        "config.json": b"{}",
    },
    "acme/SmolThing-135M-GGUF": {"SmolThing-135M-Q4_K_M.gguf": Q4},
    "other/Gated-1B-GGUF": {"gated-1b-Q4_0.gguf": Q4},
    "other/not-a-gguf-repo": {"model.safetensors": b"x" * 10},
}
META = {
    "acme/SmolThing-135M-Instruct-GGUF": {"downloads": 900, "likes": 12},
    "acme/SmolThing-135M-GGUF": {"downloads": 50, "likes": 3},
    "other/Gated-1B-GGUF": {"downloads": 300, "likes": 40},
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHub:
    with FakeHub(
        FILES,
        meta=META,
        gated={"other/Gated-1B-GGUF": "manual"},
        private={"me/private-GGUF": "hf_secret"},
        tokens={"hf_secret": "based-test"},
    ) as fake:
        fake.set_file("me/private-GGUF", "private-Q4_K_M.gguf", Q4)
        use_hub(monkeypatch, tmp_path, fake)
        yield fake


def test_lists_gguf_files_with_size_quant_and_sha256(hub: FakeHub) -> None:
    repo = "acme/SmolThing-135M-Instruct-GGUF"
    files = list_gguf_files(repo)
    commit = hub.commit(repo)
    assert files == [
        RemoteFile(repo, "SmolThing-135M-Instruct-Q4_K_M.gguf", len(Q4), "Q4_K_M",
                   hashlib.sha256(Q4).hexdigest(), commit),
        RemoteFile(repo, "SmolThing-135M-Instruct-Q8_0.gguf", len(Q8), "Q8_0",
                   hashlib.sha256(Q8).hexdigest(), commit),
        RemoteFile(repo, "sub/SmolThing-135M-Instruct-f16.gguf", len(F16), "F16",
                   hashlib.sha256(F16).hexdigest(), commit),
    ]
    [api] = hub.requests_for("GET", contains="/api/models/")
    assert "blobs=true" in api.query.lower()


def test_listing_at_a_revision(hub: FakeHub) -> None:
    repo = "acme/SmolThing-135M-GGUF"
    [f] = list_gguf_files(repo, revision=hub.commit(repo))
    assert f.revision == hub.commit(repo)
    assert hub.requests_for("GET", contains="/revision/")


def test_a_listed_file_downloads_and_verifies(hub: FakeHub, tmp_path: Path) -> None:
    [f, *_] = list_gguf_files("acme/SmolThing-135M-Instruct-GGUF")
    path = download(
        DownloadSpec(repo_id=f.repo_id, filename=f.filename, dest_dir=tmp_path / "m",
                     expected_size=f.size, expected_sha256=f.sha256),
        None,
        threading.Event(),
    )
    assert path.read_bytes() == Q4


def test_a_file_in_a_subfolder_keeps_its_folder(hub: FakeHub, tmp_path: Path) -> None:
    name = "sub/SmolThing-135M-Instruct-f16.gguf"
    path = download(DownloadSpec(repo_id="acme/SmolThing-135M-Instruct-GGUF", filename=name,
                                 dest_dir=tmp_path))
    assert path == tmp_path / "sub" / "SmolThing-135M-Instruct-f16.gguf"
    assert path.read_bytes() == F16


def test_search_finds_gguf_repos_most_downloaded_first(hub: FakeHub) -> None:
    hits = search_gguf_repos("smolthing")
    assert [h.repo_id for h in hits] == [
        "acme/SmolThing-135M-Instruct-GGUF",
        "acme/SmolThing-135M-GGUF",
    ]
    assert (hits[0].downloads, hits[0].likes, hits[0].gated) == (900, 12, False)
    assert hits[0].updated is not None and hits[0].updated.year == 2025
    [gated] = search_gguf_repos("gated")
    assert gated.gated is True
    assert search_gguf_repos("not-a-gguf") == []
    assert len(search_gguf_repos("", limit=2)) == 2
    [req, *_] = hub.requests_for("GET", contains="/api/models")
    assert "filter=gguf" in req.query and "search=smolthing" in req.query


def test_listing_errors_are_one_sentence(hub: FakeHub) -> None:
    with pytest.raises(DownloadError, match="did not find nobody/nothing, or it is private"):
        list_gguf_files("nobody/nothing")
    with pytest.raises(DownloadError, match="paste a Hugging Face access token in Settings"):
        list_gguf_files("me/private-GGUF")
    hub.fail("acme/SmolThing-135M-GGUF", 500)
    with pytest.raises(DownloadError, match=r"server error \(500\)"):
        list_gguf_files("acme/SmolThing-135M-GGUF")
    hub.fail("acme/SmolThing-135M-GGUF", 502)
    with pytest.raises(DownloadError, match=r"server error \(502\)"):
        list_gguf_files("acme/SmolThing-135M-GGUF")
    with pytest.raises(DownloadError, match="no such branch"):
        list_gguf_files("acme/SmolThing-135M-Instruct-GGUF", revision="nope")


def test_gated_download_links_to_the_licence(hub: FakeHub, tmp_path: Path) -> None:
    hub.fail("other/Gated-1B-GGUF", 403, filename="gated-1b-Q4_0.gguf")
    with pytest.raises(DownloadError) as err:
        download(DownloadSpec(repo_id="other/Gated-1B-GGUF", filename="gated-1b-Q4_0.gguf",
                              dest_dir=tmp_path))
    msg = str(err.value)
    assert "https://huggingface.co/other/Gated-1B-GGUF" in msg
    assert "accept its licence" in msg and "token in Settings" in msg


def test_offline_browsing_makes_no_request(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="You are offline"):
        search_gguf_repos("smol")
    with pytest.raises(DownloadError, match="You are offline"):
        list_gguf_files("acme/SmolThing-135M-GGUF")
    assert hub.requests == []


def test_no_network_and_timeouts_are_one_sentence(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakeHub({}) as closed:
        endpoint = closed.endpoint
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1, so Based did not list the files of acme"):
        list_gguf_files("acme/SmolThing-135M-GGUF")
    # A timeout as the installed HTTP library raises it.
    import importlib

    from huggingface_hub.utils import get_session

    session = get_session()
    lib = importlib.import_module(type(session).__module__.split(".")[0])
    exc = lib.ReadTimeout("timed out") if hasattr(lib, "ReadTimeout") else lib.exceptions.ReadTimeout()
    msg = str(explain_http_error(exc, "acme/x", "f.gguf"))
    assert msg.startswith("Hugging Face did not answer in time for f.gguf from acme/x")


def test_token_goes_to_huggingface_hubs_store(hub: FakeHub, tmp_path: Path) -> None:
    assert current_token() is None
    with pytest.raises(DownloadError, match="refused this access token"):
        save_token("hf_wrong")
    assert current_token() is None
    assert save_token("  hf_secret\n") == "tester"
    assert current_token() == "hf_secret"
    from huggingface_hub import constants

    assert Path(constants.HF_TOKEN_PATH).read_text().strip() == "hf_secret"
    # The private repo is now readable; the token goes to the Hub, never to the CDN.
    hub.requests.clear()
    [f] = list_gguf_files("me/private-GGUF")
    path = download(DownloadSpec(repo_id=f.repo_id, filename=f.filename, dest_dir=tmp_path / "p"))
    assert path.read_bytes() == Q4
    assert all(r.authorization == "Bearer hf_secret" for r in hub.requests if r.server == "hub"
               and r.path != "/api/agent-harnesses")
    assert [r.authorization for r in hub.requests if r.server == "cdn"] == [None]
    forget_token()
    assert current_token() is None
    with pytest.raises(DownloadError, match="Paste a Hugging Face access token"):
        save_token("   ")


def test_huggingface_hub_offline_flag_from_import_time_is_overridden(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert [h.repo_id for h in search_gguf_repos("SmolThing-135M-GGUF")] == [
        "acme/SmolThing-135M-GGUF"
    ]
    assert hubmod.offline_mode() is False
