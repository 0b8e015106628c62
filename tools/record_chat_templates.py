"""Record the expected chat-template outputs with Hugging Face transformers.

Run outside the test suite, in an environment that has transformers (no torch needed):

    python -m venv tfenv && tfenv/bin/pip install transformers jinja2
    tfenv/bin/python tools/record_chat_templates.py

It renders every tests/data/templates/*.jinja for a table of conversations (multi-turn, content
given as parts, tool calls, tools offered, no generation prompt, continuing the final message)
with transformers' own renderer (the function apply_chat_template uses) and writes tests/data/templates/expected.json.
The clock read by strftime_now is pinned so the recording is stable.
"""

from __future__ import annotations

import copy
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

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city's name."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                       "required": ["zone"]},
    },
}
TOOL_CALL = {"id": "call01234", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
TOOL_CALL_TURNS = [
    {"role": "system", "content": "You can look up the weather."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
    {"role": "tool", "tool_call_id": "call01234", "name": "get_weather",
     "content": "{\"temperature\": 18, \"sky\": \"cloudy\"}"},
]

# name -> (messages, options); options: tools, add_generation_prompt, continue_final_message
CONVERSATIONS: dict[str, tuple[list[dict], dict]] = {
    "user": ([{"role": "user", "content": "What is the capital of France?"}], {}),
    "system_user": ([
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name three primary colours."},
    ], {}),
    "multi_turn": ([
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "Hi! Who are you?"},
        {"role": "assistant", "content": "I am a helpful assistant."},
        {"role": "user", "content": "Tell me a fact about\n  whitespace   and ünïcødé ✨."},
    ], {}),
    "user_assistant_no_gen": ([
        {"role": "user", "content": "Say yes."},
        {"role": "assistant", "content": "Yes."},
    ], {"add_generation_prompt": False}),
    # issue 14: conversations of each kind
    "three_turns": ([
        {"role": "system", "content": "You are a patient tutor."},
        {"role": "user", "content": "What is a prime number?"},
        {"role": "assistant", "content": "A whole number above 1 whose only divisors are 1 and itself."},
        {"role": "user", "content": "Is 1 prime?"},
        {"role": "assistant", "content": "No: it has only one divisor."},
        {"role": "user", "content": "And 2?"},
    ], {}),
    "three_turns_no_gen": ([
        {"role": "user", "content": "Count to two."},
        {"role": "assistant", "content": "One, two."},
        {"role": "user", "content": "Now to three."},
        {"role": "assistant", "content": "One, two, three."},
    ], {"add_generation_prompt": False}),
    "content_parts": ([
        {"role": "system", "content": [{"type": "text", "text": "You are brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Read this: "},
                                     {"type": "text", "text": "the sky is green."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "That is not true."}]},
        {"role": "user", "content": [{"type": "text", "text": "Why not?"}]},
    ], {}),
    # what Based renders for a template that cannot read parts: each message's parts joined by
    # a line break (desktop.core.conversation.PART_SEPARATOR)
    "content_parts_joined": ([
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": "Read this: \nthe sky is green."},
        {"role": "assistant", "content": "That is not true."},
        {"role": "user", "content": "Why not?"},
    ], {}),
    "think_earlier_turns": ([
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nTwo and two make four.\n</think>\n\n2+2 = 4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "<think>\nThree and three.\n</think>\n\n3+3 = 6."},
        {"role": "user", "content": "And 4+4?"},
    ], {}),
    "reasoning_content": ([
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 = 4.", "reasoning_content": "Two and two make four."},
        {"role": "user", "content": "And 3+3?"},
    ], {}),
    "tools_offered": ([
        {"role": "user", "content": "What is the weather in Paris?"},
    ], {"tools": [WEATHER_TOOL, TIME_TOOL]}),
    "tool_calls": (TOOL_CALL_TURNS, {}),
    "tools_and_tool_calls": (TOOL_CALL_TURNS, {"tools": [WEATHER_TOOL, TIME_TOOL]}),
    "continue_final": ([
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"},
    ], {"add_generation_prompt": False, "continue_final_message": True}),
    "continue_final_space": ([
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Sure, here is one: "},
    ], {"add_generation_prompt": False, "continue_final_message": True}),
    "roles_not_alternating": ([
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second."},
    ], {}),
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
        for conv_name, (messages, options) in CONVERSATIONS.items():
            agp = options.get("add_generation_prompt", True)
            cfm = options.get("continue_final_message", False)
            tools = options.get("tools")
            case = {
                "template": path.name,
                "conversation": conv_name,
                "messages": messages,
                "add_generation_prompt": agp,
                "bos_token": bos,
                "eos_token": eos,
            }
            if tools is not None:
                case["tools"] = tools
            if cfm:
                case["continue_final_message"] = True
            try:
                rendered, _ = ctu.render_jinja_template(
                    conversations=[copy.deepcopy(messages)],
                    tools=copy.deepcopy(tools),
                    chat_template=source,
                    add_generation_prompt=agp,
                    continue_final_message=cfm,
                    bos_token=bos,
                    eos_token=eos,
                )
                case["expected"] = rendered[0]
            except Exception as exc:  # the template refuses this conversation
                case["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
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
