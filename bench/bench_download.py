"""Download throughput: ``download()`` against a plain HTTP copy of the same bytes, in one run.

    python bench/bench_download.py [--mib N] [--rounds R] [--dir DIR]

A fake Hugging Face Hub (tests/fakehub.py) runs in a child process on 127.0.0.1 and serves N MiB
of random bytes (default 256) as an LFS file: the Hub answers 302 to its "CDN" port, like the
real one. Each round times

1. ``desktop.core.downloads.download()``: huggingface_hub's metadata HEAD, then a streamed GET
   with the standard library (1 MiB reads), written to a ``.incomplete`` file, sha256 verified,
   renamed;
2. a plain ``urllib`` GET of the same URL (following the same redirect), copied to a file in
   1 MiB reads, no hashing;
3. the same plain copy plus a sha256 of the bytes (what a verified download must do at least).

It prints MB/s (median of the rounds) and ``download / plain copy``. Goal >= 0.9. No pass/fail.
On a slow or busy disk the numbers are noisy; ``--dir /dev/shm`` measures without the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = "bench/Bench-GGUF"
NAME = "bench-Q8_0.gguf"


def plain_copy(url: str, out: Path, *, hash_it: bool) -> float:
    """Seconds for a urllib GET of ``url`` copied to ``out`` (optionally hashed)."""
    h = hashlib.sha256() if hash_it else None
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r, out.open("wb") as fh:
        while True:
            data = r.read(1 << 20)
            if not data:
                break
            fh.write(data)
            if h is not None:
                h.update(data)
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where files are written (default: the temp dir)")
    args = ap.parse_args()

    from huggingface_hub import __version__ as hf_version

    from desktop.core.downloads import DownloadSpec, download
    from tests.fakehub import serve_forever_in_process

    size = args.mib << 20
    work = Path(tempfile.mkdtemp(prefix="based-bench-dl-", dir=args.dir))
    src = work / "source.bin"
    with src.open("wb") as fh:
        for _ in range(args.mib):
            fh.write(os.urandom(1 << 20))

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_forever_in_process, args=(str(src), REPO, NAME, child))
    server.start()
    endpoint = parent.recv()
    os.environ["HF_ENDPOINT"] = endpoint
    os.environ.pop("HF_HUB_OFFLINE", None)
    url = f"{endpoint}/{REPO}/resolve/main/{NAME}"
    print(f"huggingface_hub {hf_version}; {args.mib} MiB over loopback; {args.rounds} rounds")

    ours: list[float] = []
    plain: list[float] = []
    plain_hash: list[float] = []
    try:
        for i in range(args.rounds):
            dest = work / f"round{i}"
            t0 = time.perf_counter()
            path = download(DownloadSpec(repo_id=REPO, filename=NAME, dest_dir=dest), None,
                            threading.Event())
            ours.append(time.perf_counter() - t0)
            assert path.stat().st_size == size
            path.unlink()
            out = work / "plain.bin"
            plain.append(plain_copy(url, out, hash_it=False))
            out.unlink()
            plain_hash.append(plain_copy(url, out, hash_it=True))
            out.unlink()
    finally:
        parent.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
        for p in sorted(work.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        work.rmdir()

    def mbps(seconds: list[float]) -> float:
        return size / statistics.median(seconds) / 1e6

    print(f"  download()            {mbps(ours):8.0f} MB/s  (HEAD + GET + sha256 + rename)")
    print(f"  plain urllib copy     {mbps(plain):8.0f} MB/s")
    print(f"  plain copy + sha256   {mbps(plain_hash):8.0f} MB/s")
    print(f"  ratio download / plain copy          {mbps(ours) / mbps(plain):.2f}  (goal >= 0.9)")
    print(f"  ratio download / plain copy + sha256 {mbps(ours) / mbps(plain_hash):.2f}")


if __name__ == "__main__":
    main()
