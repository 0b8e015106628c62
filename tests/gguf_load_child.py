"""Child process of the GGUF fuzz test: validate and load each file named on stdin.

One JSON line per file on stdout: ``{"i": index, "outcome": ..., "message": ...}`` where outcome is
"refused" (GGUFError), "load-error" (ModelLoadError), "loaded" (loaded, tokenized and generated
two tokens, scored three), or "exception" (anything else: a bug). A line ``{"begin": i}`` comes first, so the
parent can tell which file a crash (abort, segfault) or a hang happened on.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import traceback

# text that reaches every tokenizer path: bytes outside the vocabulary, control-token look-alikes
_TEXT = "Hello world \u00e9\U0001F600\n\t<s></s><|im_end|> \u4e16\u754c\x00 \ufffd"


def main() -> int:
    # results go to the original stdout; anything llama.cpp or a library prints goes to stderr
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from desktop.core.engine import Engine, tokenize_file
    from desktop.core.errors import GGUFError, ModelLoadError
    from desktop.core.gguf_info import validate_gguf
    from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams

    opts = LoadOptions(n_ctx=64, n_threads=1)
    params = SamplingParams.deterministic(max_tokens=2)

    def out(obj: dict[str, object]) -> None:
        results.write(json.dumps(obj) + "\n")
        results.flush()

    for line in sys.stdin:
        i_s, _, path = line.rstrip("\n").partition(" ")
        i = int(i_s)
        out({"begin": i})
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            validate_gguf(path)
            tokenize_file(path, _TEXT, True)
            with Engine(path, opts) as eng:
                for add_bos in (True, False):
                    eng.tokenize_ids(_TEXT, add_bos)
                ids = eng.tokenize_ids("Hello there", True)
                eng.score(ids[:1], ids[1:4], top_k=3)
                text = "".join(
                    t.text for t in eng.stream(GenerationRequest(1, "Hello", params),
                                               threading.Event())
                )
            res: dict[str, object] = {"outcome": "loaded", "message": text[:40]}
        except GGUFError as exc:
            res = {"outcome": "refused", "message": str(exc)}
        except ModelLoadError as exc:
            res = {"outcome": "load-error", "message": str(exc)}
        except Exception as exc:  # a bug: the fuzz test reports it
            res = {"outcome": "exception", "message": f"{type(exc).__name__}: {exc}",
                   "trace": traceback.format_exc(limit=4)}
        res["i"] = i
        res["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
        out(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
