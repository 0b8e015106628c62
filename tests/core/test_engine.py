"""The engine on real tiny GGUF models: real llama.cpp, no mocks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from desktop.core.engine import Engine, cpu_backend_name, tokenize_file
from desktop.core.errors import ContextOverflowError, GGUFError, ModelLoadError
from desktop.core.sampling import InvalidSetting
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams, StopReason

PROMPT = "<|user|>\nTell me a story.<|end|>\n<|assistant|>\n"


@pytest.fixture(scope="module")
def engine(tiny_phi3: Path):
    with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=2)) as e:
        yield e


def req(prompt: str = PROMPT, rid: int = 1, **params: object) -> GenerationRequest:
    return GenerationRequest(rid, prompt, SamplingParams(**params), add_bos=True)  # type: ignore[arg-type]


def test_load_reports_where_it_runs(engine: Engine) -> None:
    info = engine.info
    assert info.n_ctx == 256
    assert info.n_vocab == 32064
    assert info.backend.startswith("CPU (") and info.gpu_used is False  # "CPU (AVX2)"
    assert info.n_threads == 2


def test_gpu_request_without_a_gpu_runs_on_the_cpu_with_a_note(tiny_phi3: Path) -> None:
    from desktop.core.devices import gpu_devices

    if gpu_devices():
        pytest.skip("this machine has a GPU device llama.cpp uses (tests/core/test_vulkan.py covers it)")
    for asked in (-1, 3):
        with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1, n_gpu_layers=asked)) as e:
            assert e.info.gpu_used is False and e.info.gpu_layers == 0
            assert e.info.note == "There is no GPU that llama.cpp can use here, so the model runs on the CPU."
            assert e.info.where == e.info.backend == cpu_backend_name()
    with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1)) as e:  # Auto: CPU, nothing to say
        assert e.info.gpu_used is False and e.info.note == ""
        assert e.info.where.startswith("CPU (")


def test_tokenize_parses_special_tokens(engine: Engine) -> None:
    toks = engine.tokenize("<|user|>\nHi<|end|>", add_bos=True, parse_special=True)
    assert toks[0].id == 1 and toks[0].special  # BOS
    user = [t for t in toks if t.piece == "<|user|>"]
    assert len(user) == 1 and user[0].special and user[0].id == 32010
    assert any(not t.special for t in toks)
    no_bos = engine.tokenize("Hi", add_bos=False)
    assert no_bos[0].id != 1
    as_text = engine.tokenize("<|user|>\nHi<|end|>", add_bos=True)  # the default: text is text
    assert as_text[0].id == 1 and not any(t.special for t in as_text[1:])
    assert all(t.typed for t in as_text if t.piece in ("<", "|", "user"))


def test_stream_yields_logprobs_and_sorted_top_k(engine: Engine) -> None:
    toks = list(engine.stream(req(temperature=0.8, seed=5, max_tokens=12, top_logprobs=5)))
    assert len(toks) == 12
    for t in toks:
        assert t.logprob <= 0.0
        assert len(t.top) == 5
        lps = [a.logprob for a in t.top]
        assert lps == sorted(lps, reverse=True)
        # the chosen token's logprob is consistent with the top list
        if t.id in [a.id for a in t.top]:
            assert abs(next(a.logprob for a in t.top if a.id == t.id) - t.logprob) < 1e-6
    st = engine.last_stats
    assert st.generated_tokens == 12 and st.stop_reason is StopReason.LENGTH
    assert st.prompt_tokens == len(engine.tokenize(PROMPT, True))
    assert st.time_to_first_token_s > 0 and st.tokens_per_second > 0


def test_top_k_is_at_most_ten_and_more_is_refused(engine: Engine) -> None:
    toks = list(engine.stream(req(temperature=0.0, max_tokens=2, top_logprobs=10)))
    assert all(len(t.top) == 10 for t in toks)
    with pytest.raises(InvalidSetting, match="from 0 to 10, but it is 50"):
        req(temperature=0.0, max_tokens=2, top_logprobs=50)  # not silently capped


def test_same_seed_same_output_different_seed_differs(engine: Engine) -> None:
    a = engine.generate(req(temperature=1.0, seed=42, max_tokens=24))
    b = engine.generate(req(temperature=1.0, seed=42, max_tokens=24))
    c = engine.generate(req(temperature=1.0, seed=43, max_tokens=24))
    assert [t.id for t in a.tokens] == [t.id for t in b.tokens]
    assert a.text == b.text
    assert [t.id for t in a.tokens] != [t.id for t in c.tokens]


def test_greedy_picks_the_argmax(engine: Engine) -> None:
    res = engine.generate(GenerationRequest(1, PROMPT, SamplingParams.deterministic(max_tokens=10)))
    assert all(t.id == t.top[0].id for t in res.tokens)


def test_stop_string_cuts_the_text(engine: Engine) -> None:
    free = engine.generate(GenerationRequest(1, PROMPT, SamplingParams.deterministic(max_tokens=30)))
    text = free.text
    assert len(text) > 6
    stop = text[3:6]
    res = engine.generate(
        GenerationRequest(2, PROMPT, SamplingParams.deterministic(max_tokens=30, stop=(stop,)))
    )
    assert res.stats.stop_reason is StopReason.STOP_STRING
    assert stop not in res.text
    assert text.startswith(res.text)
    assert len(res.text) == text.index(stop)


def test_cancel_from_another_thread_within_one_token(engine: Engine) -> None:
    cancel = threading.Event()
    reached, resume = threading.Event(), threading.Event()
    seen: list[int] = []

    def consume() -> None:
        for t in engine.stream(req(temperature=0.7, seed=1, max_tokens=200), cancel):
            seen.append(t.id)
            if len(seen) == 5:
                reached.set()
                resume.wait(10)

    th = threading.Thread(target=consume)
    th.start()
    assert reached.wait(30)
    cancel.set()  # from the main thread, while the stream is paused after token 5
    resume.set()
    th.join(30)
    assert not th.is_alive()
    assert len(seen) == 5
    assert engine.last_stats.stop_reason is StopReason.CANCELLED
    # the model stays usable
    again = engine.generate(req(temperature=0.0, max_tokens=4))
    assert again.stats.generated_tokens == 4


def test_cancel_before_start_generates_nothing(engine: Engine) -> None:
    cancel = threading.Event()
    cancel.set()
    assert list(engine.stream(req(max_tokens=10), cancel)) == []
    assert engine.last_stats.stop_reason is StopReason.CANCELLED


def test_prompt_longer_than_context_is_a_clear_error(engine: Engine) -> None:
    long_prompt = "hello world " * 400
    with pytest.raises(ContextOverflowError) as ei:
        list(engine.stream(req(long_prompt, max_tokens=4)))
    msg = str(ei.value)
    assert "256" in msg and "context" in msg
    assert engine.generate(req(max_tokens=2)).stats.generated_tokens == 2


def test_context_full_stops_generation(tiny_phi3: Path) -> None:
    with Engine(tiny_phi3, LoadOptions(n_ctx=32, n_threads=1)) as e:
        res = e.generate(req("Hello", temperature=0.0, repeat_penalty=1.0, max_tokens=500))
        assert res.stats.stop_reason in (StopReason.CONTEXT, StopReason.EOS)
        # llama.cpp pads small contexts (to 256); the answer ends when that context is full
        assert res.stats.prompt_tokens + res.stats.generated_tokens <= e.info.n_ctx + 1
        assert res.stats.generated_tokens < 500


def test_incremental_utf8_matches_a_full_decode(tiny_qwen2: Path) -> None:
    with Engine(tiny_qwen2, LoadOptions(n_ctx=512, n_threads=2)) as e:
        res = e.generate(
            GenerationRequest(
                1, "<|im_start|>user\n日本語で話して 🦙<|im_end|>\n<|im_start|>assistant\n",
                SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7,
                               max_tokens=300), add_bos=False,
            )
        )
        full = b"".join(e.vocab.piece_bytes(t.id) for t in res.tokens
                        if not e.vocab.is_eog(t.id)).decode("utf-8", "replace")
        assert res.text == full
        # at least one token on its own is not valid UTF-8 (a split multi-byte character), so
        # the incremental decoder was really exercised
        partial = 0
        for t in res.tokens:
            try:
                e.vocab.piece_bytes(t.id).decode("utf-8")
            except UnicodeDecodeError:
                partial += 1
        assert partial > 0


def test_score_matches_a_one_token_at_a_time_reference(engine: Engine) -> None:
    res = engine.generate(req(temperature=1.0, seed=3, max_tokens=40))
    prompt = [t.id for t in engine.tokenize(PROMPT, True)]
    cont = [t.id for t in res.tokens]
    batched = engine.score(prompt, cont, top_k=5)
    ref = engine.score_stepwise(prompt, cont, top_k=5)
    assert [s.id for s in batched] == cont
    assert len(batched) == len(ref) == len(cont)
    # batched and one-by-one evaluation use different matrix kernels on F16 weights: they agree
    # up to floating-point noise, and ranks agree except at near-ties
    for a, b in zip(batched, ref):
        assert abs(a.logprob - b.logprob) < 1e-2
        tie = min((abs(x.logprob - a.logprob) for x in a.top if x.id != a.id), default=1.0)
        assert a.rank == b.rank or tie < 1e-2
        assert a.rank >= 1
    # the streamed logprobs (same model, same prefix) agree with the scores
    for s, t in zip(batched, res.tokens):
        assert abs(s.logprob - t.logprob) < 1e-2
    # the model stays usable for generation afterwards
    assert engine.generate(req(max_tokens=3)).stats.generated_tokens == 3


def test_score_greedy_answer_is_all_rank_one(engine: Engine) -> None:
    res = engine.generate(GenerationRequest(1, PROMPT, SamplingParams.deterministic(max_tokens=20)))
    prompt = [t.id for t in engine.tokenize(PROMPT, True)]
    scored = engine.score(prompt, [t.id for t in res.tokens])
    assert [s.rank for s in scored] == [1] * len(scored)


def test_score_longer_than_a_batch(tiny_phi3: Path) -> None:
    with Engine(tiny_phi3, LoadOptions(n_ctx=512, n_threads=2)) as e:
        e._n_batch = 64  # force several decode chunks  # noqa: SLF001
        prompt = [t.id for t in e.tokenize(PROMPT, True)]
        cont = [t.id for t in e.tokenize(" lorem ipsum dolor sit amet" * 12, False)]
        batched = e.score(prompt, cont)
        ref = e.score_stepwise(prompt, cont)
        assert len(batched) == len(cont) > 64
        assert max(abs(a.logprob - b.logprob) for a, b in zip(batched, ref)) < 1e-2


def test_vocab_only_tokenize_file(vocab_dir: Path) -> None:
    toks = tokenize_file(vocab_dir / "ggml-vocab-qwen2.gguf", "<|im_start|>user\nhi<|im_end|>", False,
                         parse_special=True)
    assert toks[0].piece == "<|im_start|>" and toks[0].special
    assert toks[-1].piece == "<|im_end|>" and toks[-1].special
    assert any(t.piece == "hi" and not t.special for t in toks)


def test_vocab_only_file_cannot_generate(vocab_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="only a tokenizer"):
        Engine(vocab_dir / "ggml-vocab-phi-3.gguf")


def test_non_gguf_file_is_refused_before_llama(tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("this is not a model")
    with pytest.raises(GGUFError, match="not a GGUF"):
        Engine(bad)


def test_close_is_idempotent(tiny_phi3: Path) -> None:
    e = Engine(tiny_phi3, LoadOptions(n_ctx=64, n_threads=1))
    e.close()
    e.close()


def test_loading_in_several_threads_keeps_stdout_and_stderr(tiny_phi3: Path, tiny_llama_spm: Path,
                                                            tmp_path: Path) -> None:
    # llama-cpp-python's verbose=False load used to dup2 fds 1/2 to /dev/null around each load;
    # two threads loading at once could leave them there for good (prints silently vanished)
    import os
    import sys

    before = (os.fstat(1).st_ino, os.fstat(2).st_ino, sys.stdout, sys.stderr)
    errors: list[BaseException] = []

    def load(path: Path) -> None:
        try:
            for _ in range(3):
                with Engine(path, LoadOptions(n_ctx=256, n_threads=1)):
                    pass
                tokenize_file(path, "hello", True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(p,)) for p in (tiny_phi3, tiny_llama_spm, tiny_phi3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino, sys.stdout, sys.stderr) == before


def test_extra_buffer_policy_follows_the_cpu() -> None:
    from desktop.core.llama_vocab import extra_buffers_allowed

    amx = "CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 |"
    plain = "CPU : AVX2 = 1 | AVX512 = 1 | OPENMP = 1 | REPACK = 1 |"
    assert extra_buffers_allowed(plain) is True
    assert extra_buffers_allowed(amx) is False
    assert extra_buffers_allowed(amx, "1") is True
    assert extra_buffers_allowed(plain, "0") is False
    assert extra_buffers_allowed(amx, "yes please") is False  # only 0/1 override


_QUANT_SCRIPT = """
import sys, threading
from desktop.core.engine import Engine
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams
engines = [Engine(sys.argv[1], LoadOptions(n_ctx=256, n_threads=1)) for _ in range(2)]
counts = []
def run(e):
    p = SamplingParams.deterministic(max_tokens=12, top_logprobs=3)
    counts.append(len(list(e.stream(GenerationRequest(1, "Once upon a time there was", p), threading.Event()))))
threads = [threading.Thread(target=run, args=(e,)) for e in engines]
[t.start() for t in threads]
[t.join() for t in threads]
print("generated", counts)
"""


def test_quantized_model_generates_on_this_cpu_even_two_at_once(tiny_dir: Path) -> None:
    # Q8_0 weights go to llama.cpp's AMX buffer on Xeon CPUs, whose kernel segfaulted the whole
    # process (one model or two at once) until extra buffers were turned off there. A subprocess,
    # so a crash fails this test instead of killing the test run.
    import os
    import subprocess
    import sys

    from desktop.core.tinymodel import build_tiny_model

    q8 = build_tiny_model(tiny_dir / "tiny-q8_0.gguf", seed=5, n_embd=256, n_head=8, n_ff=512,
                          ftype="q8_0", name="Tiny Q8")
    env = {k: v for k, v in os.environ.items() if k != "BASED_REPACK"}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _QUANT_SCRIPT, str(q8)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=root)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "generated [12, 12]" in proc.stdout


def _threads_named(name: str) -> int:
    import os

    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as f:
                n += f.read().strip() == name
        except OSError:  # the thread ended meanwhile
            pass
    return n


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux /proc")
def test_generation_hands_back_its_compute_threads(tiny_phi3: Path) -> None:
    # Each loaded model lives on its own thread; llama.cpp's OpenMP build keeps a team of worker
    # threads per calling thread. Teams left parked make libgomp sleep between tokens once they
    # outnumber the cores (a third of the speed on 2 cores), so a finished job frees its team.
    import llama_cpp

    if "OPENMP = 1" not in llama_cpp.llama_print_system_info().decode():
        pytest.skip("this llama.cpp build has no OpenMP thread teams")
    import ctypes

    counts: dict[str, int] = {}
    name = "omp-release-chk"  # OpenMP's workers inherit the name of the thread that starts them

    def work() -> None:
        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME for this thread
        with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=3)) as e:
            counts["before"] = _threads_named(name)
            list(e.stream(req(max_tokens=4), threading.Event()))
            counts["after stream"] = _threads_named(name)
            ids = e.tokenize_ids("Hello there", True)
            e.score(ids[:2], ids[2:], top_k=2)
            counts["after score"] = _threads_named(name)

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert counts["before"] == 1, counts  # this thread alone
    assert counts["after stream"] == 1, counts
    assert counts["after score"] == 1, counts


def test_load_reports_progress_and_can_be_cancelled(tiny_phi3: Path) -> None:
    from desktop.core.engine import LoadCancelled

    seen: list[float] = []
    with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1), progress=seen.append):
        pass
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(LoadCancelled):
        Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1), progress=lambda p: False)
    # a callback belongs to its own load only: a later load without one reports to no one
    n = len(seen)
    with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1)):
        pass
    assert len(seen) == n


_FIRST_LOADS = """
import sys, threading
from desktop.core.engine import Engine
from desktop.core.types import LoadOptions
out = []
def load(p):
    try:
        with Engine(p, LoadOptions(n_ctx=256, n_threads=1)) as e:
            out.append(e.info.where)
    except Exception as exc:
        out.append(f"failed: {exc}")
ts = [threading.Thread(target=load, args=(p,)) for p in sys.argv[1:]]
for t in ts: t.start()
for t in ts: t.join()
print("\\n".join(out))
"""


def test_the_first_two_loads_of_a_process_may_run_at_once(tiny_phi3: Path, tiny_phi3_base: Path) -> None:
    # both panes load at start: the second load must wait until llama.cpp's backends (the CPU
    # variant, the Vulkan module with its instance) are all registered, or it finds no CPU backend
    import subprocess
    import sys

    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _FIRST_LOADS, str(tiny_phi3), str(tiny_phi3_base)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "failed:" not in r.stdout, r.stdout + r.stderr
        assert r.stdout.count("CPU (") == 2 or r.stdout.count("GPU: ") == 2, r.stdout


_EXIT_DURING_FIRST_USE = """
import atexit, sys, threading, time
# runs after llama_vocab's own exit handler (last in, first out): the load must be over by then
atexit.register(lambda: print("loaded before the interpreter ends:", sys.modules["desktop.core.llama_vocab"]._READY))
from desktop.core import llama_vocab
from desktop.core.engine import gpu_backend_available
threading.Thread(target=gpu_backend_available, daemon=True).start()  # the window's GPU probe
while llama_vocab._LOG_CALLBACK is None:  # set under the lock, before the backends load
    time.sleep(0.001)
print("leaving", flush=True)
"""


def test_leaving_while_a_thread_loads_the_backends_is_a_clean_exit() -> None:
    # the window self-test closes at once, while the GPU probe's daemon thread is still loading
    # llama.cpp's backends (the Vulkan module logs through our Python callback there): the exit
    # waits for it instead of aborting ("FATAL: exception not rethrown")
    import os
    import subprocess
    import sys

    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", _EXIT_DURING_FIRST_USE], capture_output=True,
                           text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "BASED_DEBUG"})
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout == "leaving\nloaded before the interpreter ends: True\n", r.stdout + r.stderr
