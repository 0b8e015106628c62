"""Downloading a split model (``name-00001-of-00003.gguf`` ...): every part, one after another,
each with the single-file machinery of :mod:`desktop.core.downloads` (Range resume, sidecar,
sha256 check before the final name), and one progress over the whole model. No Qt here.

The hub is asked about every part first, so the whole size is known (progress, free disk space)
and a missing part is named before any byte is fetched. A part already here under its final name
with the size the hub gives is kept: parts get their final name only after their sha256 check.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from desktop.core.download_state import _partial_path, _target
from desktop.core.downloads import (
    DownloadProgress,
    DownloadSpec,
    _cancelled,
    _check_disk,
    _claim,
    _download,
    _headers,
    _metadata,
)
from desktop.core.errors import DownloadCancelled, DownloadError
from desktop.core.gguf_split import SplitName, display_name

T = TypeVar("T")


def _at(seq: tuple[T | None, ...], i: int) -> T | None:
    return seq[i] if i < len(seq) else None


def download_split(
    spec: DownloadSpec,
    split: SplitName,
    on_progress: Callable[[DownloadProgress], None] | None,
    cancel: threading.Event,
) -> Path:
    """Fetch every part of the split model ``spec.filename`` names; return part 1's path.

    Progress counts bytes over all parts (``resumed_from`` includes the parts already here).
    Raises :class:`DownloadCancelled` (partials kept) and :class:`DownloadError`: one sentence that
    names the part for a per-part failure (missing on the hub, changed, damaged in transit).
    """
    first = split.first
    label = display_name(first.replace("\\", "/").rsplit("/", 1)[-1])
    parts = [
        replace(
            spec,
            filename=split.part(i),
            expected_size=_at(spec.part_sizes, i),
            expected_sha256=_at(spec.part_sha256, i) or (spec.expected_sha256 if i == 0 else None),
            part_sizes=(),
            part_sha256=(),
        )
        for i in range(split.split_count)
    ]
    finals = [_target(spec.dest_dir, p.filename) for p in parts]
    with contextlib.ExitStack() as claims:
        for f in finals:
            claims.enter_context(_claim(f))
        if cancel.is_set():
            raise _cancelled(label)
        headers = _headers(spec, label)
        remotes = []
        for p in parts:  # one metadata request per part: sizes, checksums, a missing part
            if cancel.is_set():
                raise _cancelled(label)
            remotes.append(_metadata(p, headers))
        total = sum(r.size for r in remotes)
        if spec.expected_size is not None and spec.expected_size != total:
            raise DownloadError(
                f"{label} in {spec.repo_id} has changed size on Hugging Face since the list was "
                "made: refresh the list and download it again."
            )
        here = [f.is_file() and f.stat().st_size == r.size for f, r in zip(finals, remotes)]
        partial = sum(
            _partial_path(f).stat().st_size
            for f, done in zip(finals, here)
            if not done and _partial_path(f).is_file()
        )
        _check_disk(finals[0].parent, label, sum(r.size for r, d in zip(remotes, here) if not d) - partial)
        start = sum(r.size for r, d in zip(remotes, here) if d) + partial
        before = 0  # bytes of the parts before the current one
        for i, (p, final, remote) in enumerate(zip(parts, finals, remotes)):
            if not here[i]:
                try:
                    _download(p, final, _whole(on_progress, before, total, start), cancel,
                              prefetched=(headers, remote), model_size=total)
                except DownloadCancelled:
                    raise _cancelled(label) from None
            before += remote.size
        if on_progress is not None:
            on_progress(DownloadProgress(total, total, 0.0, 0.0, start))
    return finals[0]


def _whole(
    cb: Callable[[DownloadProgress], None] | None, before: int, total: int, start: int
) -> Callable[[DownloadProgress], None] | None:
    """A part's progress as progress over the whole model."""
    if cb is None:
        return None

    def report(p: DownloadProgress) -> None:
        done = before + p.done_bytes
        eta = (total - done) / p.speed_bps if p.speed_bps > 0 else p.eta_s
        cb(DownloadProgress(done, total, p.speed_bps, eta, start))

    return report

