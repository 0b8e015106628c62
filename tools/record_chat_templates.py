"""Record the expected chat-template outputs with Hugging Face transformers.

Run outside the test suite, in an environment that has transformers (no torch needed):

    python -m venv tfenv && tfenv/bin/pip install transformers jinja2
    tfenv/bin/python tools/record_chat_templates.py

It renders every tests/data/templates/*.jinja for a table of conversations with transformers'
own renderer (the function apply_chat_template uses) and writes tests/data/templates/expected.json.
The clock read by strftime_now is pinned so the recording is stable.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import transformers
from transformers.utils import chat_template_utils as ctu

HERE = Path(__file__).resolve().parents[1] / "tests" / "data" / "templates"
FIXED_NOW = _dt.datetime(2026, 11, 24, 9, 30, 0)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return FIXED_NOW


ctu.datetime = _FixedDatetime  # strftime_now uses this module's datetime

CONVERSATIONS = {
    "user": [{"role": "user", "content": "What is the capital of France?"}],
    "system_user": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name three primary colours."},
    ],
    "multi_turn": [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "Hi! Who are you?"},
        {"role": "assistant", "content": "I am a helpful assistant."},
        {"role": "user", "content": "Tell me a fact about\n  whitespace   and ünïcødé ✨."},
    ],
    "user_assistant_no_gen": [
        {"role": "user", "content": "Say yes."},
        {"role": "assistant", "content": "Yes."},
    ],
}

SPECIALS = {
    "llama": ("<|begin_of_text|>", "<|eot_id|>"),
    "gemma": ("<bos>", "<eos>"),
    "mistral": ("<s>", "</s>"),
    "phi": ("<s>", "<|endoftext|>"),
    "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "default": ("<|endoftext|>", "<|im_end|>"),
}


def specials_for(name: str) -> tuple[str, str]:
    n = name.lower()
    for key in ("deepseek", "llama", "gemma", "mistral", "phi"):
        if key in n:
            return SPECIALS[key]
    return SPECIALS["default"]


def main() -> None:
    cases = []
    for path in sorted(HERE.glob("*.jinja")):
        source = path.read_text(encoding="utf-8")
        bos, eos = specials_for(path.stem)
        for conv_name, messages in CONVERSATIONS.items():
            agp = conv_name != "user_assistant_no_gen"
            case = {
                "template": path.name,
                "conversation": conv_name,
                "messages": messages,
                "add_generation_prompt": agp,
                "bos_token": bos,
                "eos_token": eos,
            }
            try:
                rendered, _ = ctu.render_jinja_template(
                    conversations=[messages],
                    chat_template=source,
                    add_generation_prompt=agp,
                    bos_token=bos,
                    eos_token=eos,
                )
                case["expected"] = rendered[0]
            except Exception as exc:  # the template refuses this conversation
                case["error"] = f"{type(exc).__name__}: {exc}"
            cases.append(case)
    out = {
        "transformers_version": transformers.__version__,
        "fixed_now": FIXED_NOW.isoformat(),
        "cases": cases,
    }
    (HERE / "expected.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"recorded {len(cases)} cases with transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
