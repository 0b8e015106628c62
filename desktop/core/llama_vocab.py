"""llama.cpp access shared by the engine and the prompt inspector: the library (with its logging
quieted), the backend, a model's vocabulary, vocab-only tokenization, and logits helpers.
No Qt; safe to import without loading a model."""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.errors import ModelLoadError
from desktop.core.tokenization import (
    TokenizerFacts,
    display_piece,
    facts_from_vocab,
    prompt_token_infos,
)
from desktop.core.types import TokenInfo, TopAlt

MAX_TOP_K = 10
_ATTR_CONTROL = 1 << 3

_LOG_CALLBACK: Any = None
_PATCHED = False


class _NoRedirect:
    """Stands in for llama-cpp-python's ``suppress_stdout_stderr``.

    With ``verbose=False`` that context manager ``dup2``s the process's stdout and stderr to
    /dev/null around every model load. Two threads loading at once (both panes, or a pane and the
    inspector's tokenizer) interleave the save/restore and can leave fds 1 and 2 pointing at
    /dev/null for good: later prints and error messages vanish. llama.cpp's logging is already
    routed to our quiet callback, so nothing needs redirecting.
    """

    def __init__(self, disable: bool = True) -> None:
        pass

    def __enter__(self) -> _NoRedirect:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def extra_buffers_allowed(system_info: str, override: str | None = None) -> bool:
    """Whether llama.cpp may repack weights into its "extra" CPU buffer types.

    On CPUs with Intel AMX (Xeon Sapphire Rapids and later), llama.cpp puts Q4_0/Q4_1/Q8_0 and
    k-quant weights in an AMX buffer whose matrix kernel crashes the process (SIGSEGV in
    ``ggml_backend_amx_mul_mat``, llama.cpp issue 20824; seen with llama-cpp-python 0.3.36 on a
    single model and on two at once). Without extra buffers the same weights run through the
    ordinary AVX-512 kernels. ``BASED_REPACK=1`` or ``0`` overrides the choice."""
    if override in ("0", "1"):
        return override == "1"
    return "AMX_INT8 = 1" not in system_info.upper()


LOAD_SETTINGS = threading.local()  # .progress: a llama_progress_callback for this thread's next load


def _patch_model_params(llama_cpp: Any) -> None:
    """Make every ``Llama(...)`` load start from our model parameters.

    llama-cpp-python's constructor takes neither a progress callback nor the extra-buffer switch;
    it starts from ``llama_model_default_params()``, called on the loading thread. Our version
    applies :func:`extra_buffers_allowed` and the progress callback the engine put in
    ``LOAD_SETTINGS`` for this thread (so a load on another thread never picks it up)."""
    low = llama_cpp.llama_cpp
    default = low.llama_model_default_params
    if getattr(default, "_based", False):
        return
    try:
        info = low.llama_print_system_info().decode("utf-8", "replace")
    except Exception:
        info = ""
    extra = extra_buffers_allowed(info, os.environ.get("BASED_REPACK"))

    def model_params() -> Any:
        params = default()
        if not extra and hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        progress = getattr(LOAD_SETTINGS, "progress", None)
        if progress is not None:
            params.progress_callback = progress
        return params

    model_params._based = True  # type: ignore[attr-defined]
    low.llama_model_default_params = model_params


_OMP_PAUSE: Any = None  # the OpenMP runtime's omp_pause_resource_all, or False when there is none
_OMP_FILE = re.compile(r"^lib(g|i|i5)?omp[\w.-]*\.(so|dylib)")
_OMP_NAMES = ("libgomp.so.1", "libomp.so", "libomp.so.5", "libiomp5.so", "libomp.dylib", "libgomp.1.dylib")


def _find_omp_pause() -> Any:
    if os.environ.get("BASED_OMP_RELEASE") == "0" or os.name == "nt":
        return False
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
    names = list(_OMP_NAMES)
    try:  # a runtime renamed by a wheel's repair tool (libgomp-1a2b3c4d.so.1) is found by its path
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(None, 5)
                path = fields[5].strip() if len(fields) == 6 else ""
                if _OMP_FILE.match(os.path.basename(path)) and path not in names:
                    names.append(path)
    except OSError:
        pass
    for name in names:
        try:
            lib = ctypes.CDLL(name, mode=mode)  # only a runtime llama.cpp already loaded
        except OSError:
            continue
        fn = getattr(lib, "omp_pause_resource_all", None)
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn.restype = ctypes.c_int
            return fn
    return False


def release_compute_threads() -> None:
    """Hand back the calling thread's OpenMP worker threads once its llama.cpp work is done.

    llama.cpp's CPU backend (built with OpenMP) keeps a team of worker threads per calling thread.
    Based calls llama.cpp from one long-lived thread per model, so two loaded models keep two
    teams. When the teams together hold more threads than there are cores, libgomp stops spinning
    between parallel regions and puts its threads to sleep after ~100 spins, and every generated
    token then waits for sleeping threads to wake: a third of the speed on a 2-core VM. Freeing the
    team after each generation or scoring costs one thread start at the next (microseconds).
    ``BASED_OMP_RELEASE=0`` turns this off."""
    global _OMP_PAUSE
    if _OMP_PAUSE is None:
        _OMP_PAUSE = _find_omp_pause()
    if _OMP_PAUSE:
        _OMP_PAUSE(2)  # omp_pause_hard: frees this thread's pool (a no-op inside a parallel region)


def _patch_llama_cpp(llama_cpp: Any) -> None:
    global _PATCHED
    if _PATCHED:
        return
    import importlib

    _patch_model_params(llama_cpp)

    for name in ("llama_cpp.llama", "llama_cpp._internals", "llama_cpp.llama_chat_format"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "suppress_stdout_stderr"):
            mod.suppress_stdout_stderr = _NoRedirect  # type: ignore[attr-defined]
    _PATCHED = True


_INIT_LOCK = threading.RLock()
_READY = False
_EXITING = False
FIRST_USE_EXIT_WAIT_S = 30.0


@atexit.register
def _wait_for_first_use() -> None:
    """At exit, let a thread that is loading llama.cpp's backends finish (up to 30 s).

    The window's first GPU probe runs on a daemon thread; closing at once (the window self-test
    does) leaves it inside ``ggml_backend_load_all_from_path``, where the Vulkan module logs
    through our Python log callback. Once the interpreter is finalizing, that callback cannot
    take the GIL, the C runtime ends the thread inside ggml-vulkan's C++ code, and the process
    aborts ("FATAL: exception not rethrown") after a clean run. atexit handlers run before that;
    a thread that comes later finds llama.cpp closed (RuntimeError) instead of starting it."""
    global _EXITING
    if _INIT_LOCK.acquire(timeout=FIRST_USE_EXIT_WAIT_S):
        _EXITING = True
        _INIT_LOCK.release()


def _ggml_function(llama_cpp: Any, name: str) -> Any:
    """A function of the libggml that libllama uses (not a second copy of the library).

    dlsym on libllama's handle also searches the libraries it depends on (Linux, macOS); on
    Windows GetProcAddress does not, but loading ggml.dll by its full path returns the module
    libllama already loaded. There a DLL exports only its own functions: the registry's
    (``ggml_backend_dev_count``, ``ggml_backend_load_all_from_path``) are in ggml.dll, a device's
    and a backend's (``ggml_backend_dev_name``, ``ggml_backend_dev_memory``) in ggml-base.dll.

    Never llama-cpp-python's ``_ggml.libggml`` on Linux: a wheel cannot hold symlinks, so
    ``lib/libggml.so`` is a copy of the ``libggml.so.0`` that libllama loaded, a second ggml with
    its own (empty) backend registry; backends loaded there are invisible to llama.cpp."""
    if sys.platform == "win32":  # a DLL exports only its own functions; the same module by name
        try:
            from llama_cpp import _ggml

            return getattr(_ggml.libggml, name)
        except (ImportError, OSError, AttributeError):
            pass
    lib = llama_cpp.llama_cpp._lib
    try:
        return getattr(lib, name)
    except AttributeError:
        pass
    lib_dir = Path(llama_cpp.llama_cpp.__file__).resolve().parent / "lib"
    for candidate in ("ggml.dll", "libggml.dll", "ggml-base.dll", "libggml-base.dll"):
        if (lib_dir / candidate).is_file():
            try:
                return getattr(ctypes.CDLL(str(lib_dir / candidate)), name)
            except AttributeError:
                continue
    raise AttributeError(name)


def _load_backends(llama_cpp: Any) -> None:
    """Load llama.cpp's dynamically loaded backends from llama_cpp/lib, once per process.

    A portable build (``GGML_BACKEND_DL``, ``GGML_CPU_ALL_VARIANTS``; see packaging/
    build_llama.sh) ships one ``libggml-cpu-<variant>`` per x86-64 level and registers no
    backend until one is loaded. ``ggml_backend_load_all_from_path`` asks each variant for its
    score on this CPU (CPUID) and loads the best. llama.cpp would otherwise search only the
    executable's folder and the current folder, which hold no backends (and the current folder
    is not ours to load code from). A build without ``GGML_BACKEND_DL`` has its CPU backend
    registered already (count > 0): nothing to do. Called once, by ``_llama`` under
    ``_INIT_LOCK``: a second thread waits there until every backend is registered."""
    try:
        count = _ggml_function(llama_cpp, "ggml_backend_reg_count")
        load_all = _ggml_function(llama_cpp, "ggml_backend_load_all_from_path")
    except (ImportError, AttributeError, OSError):
        return
    count.argtypes = []
    count.restype = ctypes.c_size_t
    if count() > 0:
        return
    load_all.argtypes = [ctypes.c_char_p]
    load_all.restype = None
    lib_dir = Path(llama_cpp.llama_cpp.__file__).resolve().parent / "lib"
    load_all(str(lib_dir).encode("utf-8"))  # ggml takes the folder as UTF-8, also on Windows


def _llama() -> Any:
    import llama_cpp

    global _LOG_CALLBACK, _READY
    if _READY:
        return llama_cpp
    # Once per process, and never half done: two threads (both panes, a pane and the inspector)
    # may ask at once, and the second must not call llama.cpp before every backend (the Vulkan
    # module initialises its instance for a while) is registered.
    with _INIT_LOCK:
        if _EXITING:
            raise RuntimeError("llama.cpp is not started while the process exits")
        if _LOG_CALLBACK is None and not os.environ.get("BASED_DEBUG"):
            # llama.cpp prints some messages at level NONE, which llama-cpp-python's own logger
            # always passes through; keep stderr clean for the CLI. The reference keeps the
            # callback alive. (First: loading the backends logs which CPU variant was loaded.)
            def _quiet(level: int, text: bytes, user_data: Any) -> None:
                return None

            import llama_cpp._logger  # noqa: F401  (installs its callback first; we replace it)

            _LOG_CALLBACK = llama_cpp.llama_log_callback(_quiet)
            llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        _load_backends(llama_cpp)  # before the patch below reads the CPU backend's features
        _patch_llama_cpp(llama_cpp)
        _READY = True
    return llama_cpp


def default_threads() -> int:
    n = os.cpu_count() or 1
    return max(1, min(8, n))


def gpu_backend_available() -> bool:
    """True when this llama.cpp build can offload layers to a GPU (CUDA, Metal, Vulkan...)."""
    try:
        return bool(_llama().llama_supports_gpu_offload())
    except Exception:
        return False


# The widest instruction set a CPU backend was compiled for, from llama.cpp's feature list
# (ggml_backend_get_features, as llama_print_system_info prints it), widest first.
_CPU_LEVELS = (
    (("AMX_INT8",), "AVX-512, AMX"),
    (("AVX512",), "AVX-512"),
    (("AVX2",), "AVX2"),
    (("AVX",), "AVX"),
    (("SSSE3", "SSE3"), "SSE4.2"),  # llama.cpp's sse42 variant reports what -msse4.2 implies
    (("SVE",), "SVE"),
    (("NEON",), "NEON"),
)


def cpu_variant_label(system_info: str) -> str:
    """The instruction set of the CPU code llama.cpp runs: "AVX2", "AVX-512", "SSE4.2"...

    ``system_info`` is ``llama_print_system_info()`` (``"CPU : SSE3 = 1 | AVX2 = 1 | ..."``).
    With a portable build (one ``libggml-cpu-<variant>`` per x86-64 level) the features are
    those of the variant llama.cpp chose for this processor; with a native build, those it was
    compiled with. "SSE2" when the CPU part names none of them (x86-64's baseline)."""
    cpu = ""
    for part in re.split(r"(?=\b[A-Za-z][\w-]* : )", system_info):
        if part.strip().upper().startswith("CPU :"):
            cpu = part
            break
    found = {m.group(1).upper() for m in re.finditer(r"(\w+) = 1\b", cpu)}
    for names, label in _CPU_LEVELS:
        if any(n in found for n in names):
            return label
    return "SSE2" if cpu else "CPU"


def cpu_backend_name() -> str:
    """"CPU (AVX2)": llama.cpp's CPU backend and the instruction set of the variant it runs."""
    try:
        info = _llama().llama_print_system_info().decode("utf-8", "replace")
    except Exception:
        return "CPU"
    label = cpu_variant_label(info)
    return "CPU" if label == "CPU" else f"CPU ({label})"


class _Vocab:
    """Token -> bytes / special lookups and tokenization over a loaded llama model's vocabulary."""

    def __init__(self, vocab_ptr: Any, n_vocab: int) -> None:
        self._ptr = vocab_ptr
        self.n_vocab = n_vocab
        self._cache: dict[tuple[int, bool], bytes] = {}
        self._facts: TokenizerFacts | None = None

    def piece_bytes(self, token: int, special: bool = True) -> bytes:
        key = (token, special)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        lib = _llama()
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = lib.llama_token_to_piece(self._ptr, token, buf, size, 0, special)
            if n < 0:
                size = -n + 1
                continue
            out = buf.raw[:n]
            break
        self._cache[key] = out
        return out

    def piece(self, token: int) -> str:
        """The token for people (``display_piece``: bytes of an incomplete character as <0xNN>)."""
        return display_piece(self.piece_bytes(token))

    def text(self, token: int) -> bytes:
        """The token's text as stored in the vocabulary (what llama.cpp matches special tokens by)."""
        if token < 0 or token >= self.n_vocab:
            return b""
        return bytes(_llama().llama_vocab_get_text(self._ptr, token) or b"")

    def is_special(self, token: int) -> bool:
        lib = _llama()
        try:
            attr = int(lib.llama_vocab_get_attr(self._ptr, token))
        except Exception:
            return False
        return bool(attr & _ATTR_CONTROL)

    def is_eog(self, token: int) -> bool:
        return bool(_llama().llama_vocab_is_eog(self._ptr, token))

    @property
    def facts(self) -> TokenizerFacts:
        """llama.cpp's decisions for this vocabulary (add BOS/EOS, space prefix, special tokens)."""
        if self._facts is None:
            self._facts = facts_from_vocab(self)
        return self._facts

    def tokenize_bytes(self, data: bytes, parse_special: bool = False) -> list[int]:
        """``llama_tokenize`` on one fragment, adding no BOS/EOS. Use
        :func:`desktop.core.tokenization.tokenize_prompt` for a prompt."""
        if not data:
            return []
        lib = _llama()
        n_max = len(data) + 8
        while True:
            buf = (lib.llama_token * n_max)()
            n = int(lib.llama_tokenize(self._ptr, data, len(data), buf, n_max, False, parse_special))
            if n >= 0:
                return list(buf[:n])
            n_max = -n

    def token_infos(self, ids: Sequence[int]) -> list[TokenInfo]:
        out = []
        for t in ids:
            raw = self.piece_bytes(int(t))
            out.append(TokenInfo(int(t), display_piece(raw), self.is_special(int(t)), raw))
        return out


def _log_softmax(row: np.ndarray) -> tuple[np.ndarray, float]:
    """The row and its log-sum-exp (so logprob(i) = row[i] - lse)."""
    m = float(row.max())
    lse = m + float(np.log(np.exp(row - m).sum()))
    return row, lse


def _top_indices(row: np.ndarray, k: int, row_max: float | None = None) -> np.ndarray:
    """Indices of the k largest logits, largest first.

    A full argpartition over a 50k-150k vocabulary costs ~0.3 ms per token; instead take the few
    logits within a margin of the maximum (usually a handful) and sort only those.
    """
    m = float(row.max()) if row_max is None else row_max
    margin = 4.0
    cand = np.flatnonzero(row >= m - margin)
    while cand.shape[0] < k and margin < 1e4:
        margin *= 4.0
        cand = np.flatnonzero(row >= m - margin)
    if cand.shape[0] < k:  # non-finite logits: fall back to the exact method
        cand = np.argpartition(row, -k)[-k:]
    elif cand.shape[0] > 256:
        cand = cand[np.argpartition(row[cand], -k)[-k:]]
    order = np.argsort(-row[cand], kind="stable")[:k]
    return cand[order]


def _top_alts(row: np.ndarray, lse: float, k: int, vocab: _Vocab) -> tuple[TopAlt, ...]:
    if k <= 0:
        return ()
    k = min(k, MAX_TOP_K, row.shape[0])
    idx = _top_indices(row, k)
    return tuple(TopAlt(int(i), vocab.piece(int(i)), float(row[i]) - lse) for i in idx)


# -- vocab-only tokenization (inspector, `based prompt`) ----------------------------------------

_VOCAB_CACHE: OrderedDict[tuple[str, int, int], tuple[Any, _Vocab]] = OrderedDict()
_VOCAB_LOCK = threading.Lock()


@atexit.register
def _free_vocab_models() -> None:
    """Free the cached vocab-only models while llama.cpp is still there: left to the end of
    the interpreter, their finalizers run after llama_cpp's module is torn down ("Exception
    ignored in Llama.__del__", and at worst an abort)."""
    with _VOCAB_LOCK:
        models = [llm for llm, _vocab in _VOCAB_CACHE.values()]
        _VOCAB_CACHE.clear()
    for llm in models:
        try:
            llm.close()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass


def _vocab_model(path: str) -> tuple[Any, _Vocab]:
    from desktop.core.gguf_info import validate_gguf

    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, int(st.st_mtime_ns))
    with _VOCAB_LOCK:
        hit = _VOCAB_CACHE.get(key)
        if hit is not None:
            _VOCAB_CACHE.move_to_end(key)
            return hit
    validate_gguf(path)
    lib = _llama()
    try:
        llm = lib.Llama(model_path=path, vocab_only=True, verbose=False)
    except Exception as exc:
        raise ModelLoadError(
            f"llama.cpp could not read the tokenizer of {Path(path).name}: the file may be damaged "
            "or too new for this version of Based."
        ) from exc
    vocab = _Vocab(llm._model.vocab, int(lib.llama_vocab_n_tokens(llm._model.vocab)))
    with _VOCAB_LOCK:
        _VOCAB_CACHE[key] = (llm, vocab)
        while len(_VOCAB_CACHE) > 4:
            _VOCAB_CACHE.popitem(last=False)
    return llm, vocab


_TOKENIZE_LOCK = threading.Lock()


def tokenizer_facts(path: str | os.PathLike[str]) -> TokenizerFacts:
    """llama.cpp's decisions about a model file's tokenizer (vocab-only load, cached):
    add BOS/EOS, space prefix, control tokens. Raises GGUFError / ModelLoadError."""
    _, vocab = _vocab_model(str(path))
    with _TOKENIZE_LOCK:
        return vocab.facts


def tokenize_file(
    path: str | os.PathLike[str],
    text: str,
    add_bos: bool,
    *,
    add_eos: bool = False,
    literal_spans: Sequence[tuple[int, int]] = (),
    parse_special: bool = False,
) -> list[TokenInfo]:
    """Tokenize with a model file's own tokenizer, loading only its vocabulary (cached).
    The arguments are those of :func:`desktop.core.tokenization.tokenize_prompt`."""
    _, vocab = _vocab_model(str(path))
    with _TOKENIZE_LOCK:
        return prompt_token_infos(vocab, text, add_bos=add_bos, add_eos=add_eos,
                                  literal_spans=literal_spans, parse_special=parse_special)
