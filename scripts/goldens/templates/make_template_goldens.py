#!/usr/bin/env python3
"""Writes the chat-template goldens: the prompt text Hugging Face transformers
renders for a fixed set of conversations, with the real chat templates of the
families lucid runs, for crates/engine/tests/chat_templates.rs.

The templates are the ones llama.cpp keeps in models/templates/ (each fetched
from its model's tokenizer_config.json on the Hugging Face Hub), as vendored by
llama-cpp-python 0.3.36 (the PyPI sdist, sha256
832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e). Each golden
carries its template's source, so the test needs neither the sdist nor this
script.

Rendering is transformers' own: `render_jinja_template`, the function that
`PreTrainedTokenizerBase.apply_chat_template(..., tokenize=False)` calls, with
the model's bos_token and eos_token as template variables (apply_chat_template
passes the tokenizer's special tokens the same way). A conversation that the
template refuses (it raises) is recorded with the message it raised.

The date is frozen: templates that print today's date call transformers'
`strftime_now`, which reads `datetime.now()` from
transformers.utils.chat_template_utils; that name is replaced here by a clock
stopped at FROZEN_DATE, and lucid's test renders with the same date
(`ChatTemplate::with_date`). No `date_string` is passed: Llama 3.1's template
falls back to its own "26 Jul 2024" without one, under transformers as under
lucid.

Usage (CI never runs this; the goldens are committed):

    .cache/fixtures-venv/bin/python scripts/goldens/templates/make_template_goldens.py

Environment (optional):
  LLAMA_TEMPLATES  llama.cpp's models/templates directory.
                   default: <repo>/.cache/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates

Made with transformers 5.25.0 and jinja2 3.1.6; the versions that ran are
written into each golden.

Each golden file is
  {"generator", "transformers", "jinja2", "model", "source", "source_sha256",
   "date": "YYYY-MM-DD", "variables": {"bos_token", "eos_token"},
   "chat_template": SOURCE,
   "cases": [{"name", "messages", "tools", "add_generation_prompt",
              "rendered": TEXT} or {..., "raises": MESSAGE}]}
where a variable missing from "variables" is one the model's tokenizer does not
have (Qwen's bos_token is null), and "tools" is null when none are passed.
Messages are written with lucid's ChatMessage fields in its order: role,
content, tool_calls, tool_call_id, name.
"""

import datetime as _datetime
import hashlib
import json
import os
import sys

import jinja2
import transformers
import transformers.utils.chat_template_utils as ctu

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GOLDEN_DIR = os.path.join(REPO, "tests", "goldens", "templates")
TEMPLATES_DIR = os.environ.get(
    "LLAMA_TEMPLATES",
    os.path.join(
        REPO,
        ".cache",
        "llama-src",
        "llama_cpp_python-0.3.36",
        "vendor",
        "llama.cpp",
        "models",
        "templates",
    ),
)

# A day whose day and month need zero padding, so `%d` and `%m` are checked.
FROZEN_DATE = _datetime.datetime(2025, 3, 5, 14, 30, 0)

# (golden name, file in models/templates, model, bos_token, eos_token): the
# special tokens of each model's tokenizer_config.json (None where it has
# none), which apply_chat_template passes to the template.
TEMPLATES = [
    ("qwen2.5", "Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen/Qwen2.5-7B-Instruct", None, "<|im_end|>"),
    ("qwen3", "Qwen-Qwen3-0.6B.jinja", "Qwen/Qwen3-0.6B", None, "<|im_end|>"),
    (
        "llama3.1",
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "meta-llama/Llama-3.1-8B-Instruct",
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    (
        "llama3.2",
        "meta-llama-Llama-3.2-3B-Instruct.jinja",
        "meta-llama/Llama-3.2-3B-Instruct",
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    (
        "llama3.3",
        "meta-llama-Llama-3.3-70B-Instruct.jinja",
        "meta-llama/Llama-3.3-70B-Instruct",
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    (
        "mistral-nemo",
        "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        "mistralai/Mistral-Nemo-Instruct-2407",
        "<s>",
        "</s>",
    ),
    (
        "mistral-small-3.2",
        "Mistral-Small-3.2-24B-Instruct-2506.jinja",
        "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
        "<s>",
        "</s>",
    ),
    (
        "phi3.5",
        "microsoft-Phi-3.5-mini-instruct.jinja",
        "microsoft/Phi-3.5-mini-instruct",
        "<s>",
        "<|endoftext|>",
    ),
    ("gemma2", "google-gemma-2-2b-it.jinja", "google/gemma-2-2b-it", "<bos>", "<eos>"),
    (
        "gpt-oss",
        "openai-gpt-oss-120b.jinja",
        "openai/gpt-oss-120b",
        "<|startoftext|>",
        "<|return|>",
    ),
]


def message(role, content, tool_calls=None, tool_call_id=None, name=None):
    """A message as lucid's ChatMessage serializes it (fields in its order,
    empty ones left out)."""
    m = {"role": role, "content": content}
    if tool_calls:
        m["tool_calls"] = tool_calls
    if tool_call_id is not None:
        m["tool_call_id"] = tool_call_id
    if name is not None:
        m["name"] = name
    return m


def call(call_id, name, arguments):
    # Mistral's templates want ids of nine alphanumerics.
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# Two tools as an OpenAI client sends them. Keys are in the order clients
# write them (not sorted), and the texts hold what a JSON encoder may escape
# (quotes, <, >, &, ', non-ASCII), so `tojson`'s output is checked to the byte.
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city (e.g. 'Paris' or Zürich) & return it as <json>.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                    "days": {"type": "integer", "description": "Days ahead, 0 for today", "default": 0},
                    "threshold": {"type": "number", "description": "Rain probability to report", "default": 0.25},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Get the local time in a time zone.",
            "parameters": {
                "type": "object",
                "properties": {
                    "timezone": {"type": "string", "description": "An IANA time zone, like Europe/Paris"}
                },
                "required": ["timezone"],
            },
        },
    },
]

SYSTEM = message("system", "You are a concise assistant. Answer in one sentence.")
WEATHER_CALL = call("call00001", "get_weather", {"city": "Paris", "unit": "celsius", "days": 0})
WEATHER_RESULT = message(
    "tool", '{"temperature": 22.5, "condition": "sunny"}', tool_call_id="call00001", name="get_weather"
)

# (name, messages, tools, add_generation_prompt values)
CONVERSATIONS = [
    ("single_user", [message("user", "Hello! Who are you?")], None, [True, False]),
    (
        "system_multi_turn",
        [
            SYSTEM,
            message("user", "What is the capital of France?"),
            message("assistant", "The capital of France is Paris."),
            # Surrounding whitespace, which some templates trim.
            message("user", "  And of Italy?\n"),
        ],
        None,
        [True, False],
    ),
    (
        "multi_turn",
        [
            message("user", "What is the capital of France?"),
            message("assistant", "The capital of France is Paris."),
            message("user", "And of Italy?"),
        ],
        None,
        [True, False],
    ),
    # A conversation that ends with the assistant, rendered as for training.
    (
        "ends_with_assistant",
        [message("user", "Say hi."), message("assistant", "Hi!")],
        None,
        [False],
    ),
    ("tools_first_turn", [message("user", "What's the weather in Paris?")], TOOLS, [True]),
    (
        "tool_result_pending",
        [
            message("user", "What's the weather in Paris?"),
            message("assistant", "", tool_calls=[WEATHER_CALL]),
            WEATHER_RESULT,
        ],
        TOOLS,
        [True],
    ),
    (
        "system_tool_conversation",
        [
            SYSTEM,
            message("user", "What's the weather in Paris?"),
            message("assistant", "", tool_calls=[WEATHER_CALL]),
            WEATHER_RESULT,
            message("assistant", "It is 22.5 °C and sunny in Paris."),
            message("user", "And what time is it there?"),
        ],
        TOOLS,
        [True, False],
    ),
    (
        "parallel_tool_calls",
        [
            message("user", "Weather in Paris and the time in Tokyo?"),
            message(
                "assistant",
                "",
                tool_calls=[
                    WEATHER_CALL,
                    call("call00002", "get_time", {"timezone": "Asia/Tokyo"}),
                ],
            ),
            WEATHER_RESULT,
            message("tool", "21:30", tool_call_id="call00002", name="get_time"),
        ],
        TOOLS,
        [True],
    ),
]


class FrozenDatetime(_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FROZEN_DATE


def render(source, messages, tools, add_generation_prompt, variables):
    rendered, _ = ctu.render_jinja_template(
        conversations=[messages],
        tools=tools,
        chat_template=source,
        add_generation_prompt=add_generation_prompt,
        **variables,
    )
    return rendered[0]


def main():
    ctu.datetime = FrozenDatetime
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    for name, file, model, bos, eos in TEMPLATES:
        with open(os.path.join(TEMPLATES_DIR, file), encoding="utf-8") as f:
            source = f.read()
        variables = {}
        if bos is not None:
            variables["bos_token"] = bos
        if eos is not None:
            variables["eos_token"] = eos
        cases = []
        for conv_name, messages, tools, prompts in CONVERSATIONS:
            for add_generation_prompt in prompts:
                case = {
                    "name": conv_name,
                    "messages": messages,
                    "tools": tools,
                    "add_generation_prompt": add_generation_prompt,
                }
                try:
                    case["rendered"] = render(source, messages, tools, add_generation_prompt, variables)
                except jinja2.exceptions.TemplateError as e:
                    case["raises"] = str(e)
                cases.append(case)
        golden = {
            "generator": "scripts/goldens/templates/make_template_goldens.py",
            "transformers": transformers.__version__,
            "jinja2": jinja2.__version__,
            "model": model,
            "source": "llama.cpp models/templates/" + file + " (llama-cpp-python 0.3.36 sdist)",
            "source_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
            "date": FROZEN_DATE.strftime("%Y-%m-%d"),
            "variables": variables,
            "chat_template": source,
            "cases": cases,
        }
        path = os.path.join(GOLDEN_DIR, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False, indent=1)
            f.write("\n")
        raised = [f"{c['name']}({c['add_generation_prompt']})" for c in cases if "raises" in c]
        print(f"{path}: {len(cases)} cases, raised: {', '.join(raised) or 'none'}", file=sys.stderr)


if __name__ == "__main__":
    main()
