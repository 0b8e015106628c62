"""Two small parts of the engine: llama.cpp's load-progress hook (with cancel) and holding
back streamed text that could be the start of a stop string."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from desktop.core.errors import ModelLoadError
from desktop.core.llama_vocab import LOAD_SETTINGS


class LoadCancelled(ModelLoadError):
    """The load was aborted through the progress callback."""


@contextlib.contextmanager
def _load_progress(progress: Callable[[float], bool | None] | None) -> Iterator[None]:
    """Hand llama.cpp a progress callback for the next model load on this thread.

    llama-cpp-python's ``Llama`` takes no progress callback; the model parameters it starts from
    (see ``llama_vocab._patch_model_params``) carry the one set here. Returning False from
    ``progress`` makes llama.cpp abort the load.
    """
    if progress is None:
        yield
        return
    import llama_cpp.llama_cpp as low

    aborted = [False]

    def _cb(p: float, _user: Any) -> bool:
        try:
            keep = progress(float(p)) is not False
        except Exception:
            keep = True
        if not keep:
            aborted[0] = True
        return keep

    LOAD_SETTINGS.progress = low.llama_progress_callback(_cb)
    try:
        yield
    except Exception:
        if aborted[0]:
            raise LoadCancelled("Loading was cancelled.") from None
        raise
    finally:
        LOAD_SETTINGS.progress = None


def _stop_hold(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
