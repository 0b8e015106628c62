"""A split model on a fake Hugging Face Hub (its parts in a subfolder, as big GGUF repos ship them):
listed as one model, downloaded whole with a resume and a sha256 check per part and progress over
the total, listed once in the library and removed whole, by the core and by `based models`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from desktop.cli import main
from desktop.core import downloads
from desktop.core.downloads import (
    DownloadProgress,
    DownloadSpec,
    discard_partial,
    download,
    partial_downloads,
)
from desktop.core.errors import DownloadError
from desktop.core.gguf_info import validate_gguf
from desktop.core.gguf_split import model_parts
from desktop.core.hub import list_gguf_files
from tests.fakehub import FakeHub, split_repo_files, use_hub

REPO = "tester/Tiny-Split-GGUF"
FIRST = "F16/Tiny-Split-F16-00001-of-00003.gguf"
NAMES = [f"F16/Tiny-Split-F16-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
MIB = 1 << 20


@pytest.fixture
def files(tiny_split: Path, tiny_llama_spm: Path) -> dict[str, bytes]:
    out = split_repo_files(tiny_split, "F16")
    assert sorted(out) == NAMES
    out["Q4_0/Broken-00001-of-00002.gguf"] = out[NAMES[1]]  # its part 2 was never uploaded
    out["tiny-llama.Q8_0.gguf"] = tiny_llama_spm.read_bytes()
    out["README.md"] = b"# tiny split\n"
    return out


@pytest.fixture
def hub(files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    with FakeHub({REPO: files}) as fake:
        use_hub(monkeypatch, tmp_path, fake)
        yield fake


def body_gets(hub: FakeHub) -> list[tuple[str, str | None]]:
    """(blob sha256, Range header) of each GET for file bytes, in order."""
    return [(r.path.rsplit("/", 1)[-1], r.range) for r in hub.requests if r.method == "GET" and r.server == "cdn"]


def total(files: dict[str, bytes]) -> int:
    return sum(len(files[n]) for n in NAMES)


def test_the_hub_lists_a_split_model_as_one_entry(hub: FakeHub, files: dict[str, bytes]) -> None:
    listed = {f.filename: f for f in list_gguf_files(REPO)}
    assert set(listed) == {FIRST, "Q4_0/Broken-00001-of-00002.gguf", "tiny-llama.Q8_0.gguf"}
    f = listed[FIRST]
    assert (f.parts, f.part_files, f.size, f.quant, f.sha256) == (3, tuple(NAMES), total(files), "F16", None)
    assert f.part_sizes == tuple(len(files[n]) for n in NAMES)
    assert f.part_sha256 == tuple(hub.sha256(REPO, n) for n in NAMES)
    assert f.label == "F16/Tiny-Split-F16 (3 parts)" and f.missing_parts == ()
    assert listed["Q4_0/Broken-00001-of-00002.gguf"].missing_parts == (2,)
    single = listed["tiny-llama.Q8_0.gguf"]
    assert single.parts == 1 and single.sha256 == hub.sha256(REPO, "tiny-llama.Q8_0.gguf")


def test_download_fetches_every_part_with_progress_over_the_total(
    hub: FakeHub, files: dict[str, bytes], tmp_path: Path
) -> None:
    listed = {f.filename: f for f in list_gguf_files(REPO)}[FIRST]
    seen: list[DownloadProgress] = []
    spec = DownloadSpec(repo_id=REPO, filename=NAMES[1], dest_dir=tmp_path,  # any part named
                        expected_size=listed.size, part_sizes=listed.part_sizes,
                        part_sha256=listed.part_sha256)
    path = download(spec, seen.append, threading.Event())
    assert path == tmp_path / FIRST
    for name in NAMES:
        assert (tmp_path / name).read_bytes() == files[name]
    done = [p.done_bytes for p in seen]
    assert done == sorted(done) and done[-1] == total(files)
    assert {p.total_bytes for p in seen} == {total(files)}
    assert len(validate_gguf(path).parts) == 3
    assert sorted(p.name for p in (tmp_path / "F16").iterdir()) == [Path(n).name for n in NAMES]


def test_a_dropped_part_resumes_where_it_stopped(
    hub: FakeHub, files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "MAX_RETRIES", 1)
    cut = 2 * MIB + 777
    hub.drop_after, hub.drops_left = cut, 1000
    with pytest.raises(DownloadError, match="connection dropped"):
        download(DownloadSpec(repo_id=REPO, filename=FIRST, dest_dir=tmp_path), None, threading.Event())
    [part] = partial_downloads(tmp_path)  # the model, not its parts
    assert (part.filename, part.done_bytes, part.total_bytes) == (FIRST, cut, total(files))
    hub.drops_left = 0
    hub.requests.clear()
    seen: list[DownloadProgress] = []
    path = download(DownloadSpec(repo_id=REPO, filename=FIRST, dest_dir=tmp_path), seen.append,
                    threading.Event())
    shas = [hub.sha256(REPO, n) for n in NAMES]
    assert body_gets(hub) == [(shas[0], f"bytes={cut}-"), (shas[1], None), (shas[2], None)]
    assert seen[0].resumed_from == cut and seen[-1].done_bytes == total(files)
    assert partial_downloads(tmp_path) == [] and len(validate_gguf(path).parts) == 3
    hub.requests.clear()  # everything is here: asking again fetches nothing
    assert download(DownloadSpec(repo_id=REPO, filename=FIRST, dest_dir=tmp_path), None, threading.Event()) == path
    assert body_gets(hub) == []


def test_each_part_is_checked_against_its_own_sha256(hub: FakeHub, files: dict[str, bytes], tmp_path: Path) -> None:
    hub.corrupt_blobs = {hub.sha256(REPO, NAMES[2])}
    with pytest.raises(DownloadError) as err:
        download(DownloadSpec(repo_id=REPO, filename=FIRST, dest_dir=tmp_path), None, threading.Event())
    assert str(err.value).startswith(f"{NAMES[2]} arrived damaged")
    assert "\n" not in str(err.value)
    folder = sorted(p.name for p in (tmp_path / "F16").iterdir())
    assert folder == [Path(n).name for n in NAMES[:2]]  # verified parts kept, the bad one deleted
    hub.corrupt_blobs = set()
    hub.requests.clear()
    download(DownloadSpec(repo_id=REPO, filename=FIRST, dest_dir=tmp_path), None, threading.Event())
    assert [sha for sha, _ in body_gets(hub)] == [hub.sha256(REPO, NAMES[2])]


def test_a_part_missing_on_the_hub_is_named_before_any_byte(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as err:
        download(DownloadSpec(repo_id=REPO, filename="Q4_0/Broken-00001-of-00002.gguf", dest_dir=tmp_path),
                 None, threading.Event())
    assert "Broken-00002-of-00002.gguf" in str(err.value) and "\n" not in str(err.value)
    assert body_gets(hub) == [] and not (tmp_path / "Q4_0").exists()


def test_discarding_an_unfinished_split_download_leaves_nothing(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DownloadSpec(repo_id=REPO, filename=FIRST, dest_dir=tmp_path)
    hub.corrupt_blobs = {hub.sha256(REPO, NAMES[2])}
    with pytest.raises(DownloadError):  # parts 1 and 2 arrive, part 3 does not
        download(spec, None, threading.Event())
    hub.corrupt_blobs = set()
    monkeypatch.setattr(downloads, "MAX_RETRIES", 0)
    hub.drop_after, hub.drops_left = 3 * MIB, 1000
    with pytest.raises(DownloadError, match="connection dropped"):  # part 3 stops part-way
        download(spec, None, threading.Event())
    [part] = partial_downloads(tmp_path)
    assert part.filename == FIRST and part.done_bytes > (tmp_path / NAMES[0]).stat().st_size
    discard_partial(tmp_path, NAMES[1])  # any part names the model
    assert list((tmp_path / "F16").iterdir()) == []


def test_cli_files_download_list_remove(hub: FakeHub, files: dict[str, bytes],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "files", REPO]) == 0
    out = capsys.readouterr().out
    assert "F16/Tiny-Split-F16 (3 parts)" in out and "3 parts" in out and "-00002-of-" not in out
    assert "incomplete: no part 2" in out
    assert main(["models", "download", REPO, FIRST, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["size"] == total(files) and len(got["parts"]) == 3
    assert all(Path(p).is_file() for p in got["parts"])
    assert main(["models", "list", "--json"]) == 0
    [m] = json.loads(capsys.readouterr().out)
    assert (m["label"], m["repo"], m["size"], m["quant"]) == ("Tiny-Split-F16 (3 parts)", REPO, total(files), "F16")
    assert main(["models", "list"]) == 0
    assert "Tiny-Split-F16 (3 parts)" in capsys.readouterr().out
    assert main(["models", "remove", "Tiny-Split-F16 (3 parts)"]) == 0
    assert "freed" in capsys.readouterr().out
    assert not any(Path(p).exists() for p in got["parts"])
    assert model_parts(Path(got["path"]))[0] == Path(got["path"])
