"""Request-field conformance: every field in the tables of SERVER.md's
"Request fields" section, sent to a running `lucid serve`.

Each row says what lucid does with a field: `applied` (a 200 whose output
shows the field's effect), `accepted` (metadata that asks nothing of the
model: a 200 whose output is the same as without it) or `refused` (a 400
whose error names the field). This module reads the tables, sends one
request per row with the field set to a sample value defined here, and
checks the row: an applied field by a probe of its own (greedy decoding,
compared with the same request without the field). A row with no sample
here, or a sample here with no row, fails, so the tables and the server
cannot drift apart.

Generations are greedy and short (SmolLM2-135M on two shared cores). The
embedding routes' rows go to a server of all-MiniLM-L6-v2 and the reranker
fixture (`embed_server`), where an output is the vectors or the ranking.
"""

import array
import base64
import copy
import json
import re
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from conftest import API_KEY

SERVER_MD = Path(__file__).resolve().parents[2] / "crates" / "server" / "SERVER.md"
VERDICTS = ("applied", "accepted", "refused")
PROMPT = "Write a short poem about the sea."
REPEAT = "Say the word apple ten times."
TOKENS = 12
SHORT = 2
HOT_SEED = 100


# --- The tables --------------------------------------------------------------

def read_tables(text: str) -> dict[str, dict[str, str]]:
    """The verdict of each field, by table: `{"/v1/chat/completions":
    {"temperature": "applied", ...}, "options": {...}}`. A table is named by
    the first code span of its `####` heading: a route (`POST /api/chat`),
    or `options` for Ollama's options."""
    if "\n### Request fields\n" not in text:
        raise ValueError("SERVER.md has no `### Request fields` section")
    section = text.split("\n### Request fields\n", 1)[1].split("\n### ", 1)[0]
    tables: dict[str, dict[str, str]] = {}
    rows = None
    for line in section.splitlines():
        if line.startswith("#### "):
            name = re.search(r"`([^`]+)`", line)
            if not name:
                raise ValueError(f"a table heading names no route: {line!r}")
            key = name.group(1).removeprefix("POST ").strip()
            rows = tables.setdefault(key, {})
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if rows is None or not line.startswith("|") or len(cells) < 2:
            continue
        if cells[0] in ("Field", "") or set(cells[0]) <= set("-: "):
            continue
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        if not m:
            raise ValueError(f"a row's field is not one code span: {line!r}")
        verdict = re.match(r"[a-z]+", cells[1])
        if not verdict or verdict.group(0) not in VERDICTS:
            raise ValueError(f"a row does not start with {'/'.join(VERDICTS)}: {line!r}")
        if m.group(1) in rows:
            raise ValueError(f"`{m.group(1)}` has two rows in one table")
        rows[m.group(1)] = verdict.group(0)
    return tables


try:
    TABLES = read_tables(SERVER_MD.read_text())
    TABLE_ERROR = None
except (OSError, ValueError) as e:
    TABLES, TABLE_ERROR = {}, str(e)


# --- Talking to the server -----------------------------------------------------

@dataclass
class Reply:
    status: int
    body: Any
    """The JSON body; for a stream, the list of its events' data."""


# One client, so that the requests share a kept-alive connection.
CLIENT = httpx.Client(timeout=120, headers={"Authorization": f"Bearer {API_KEY}"})


def post(server, path: str, body: dict) -> Reply:
    r = CLIENT.post(f"{server.base}{path}", json=body)
    kind = r.headers.get("content-type", "")
    if "event-stream" in kind:
        data = [line[len("data: "):] for line in r.text.splitlines() if line.startswith("data: ")]
        return Reply(r.status_code, [d if d == "[DONE]" else json.loads(d) for d in data])
    lines = [line for line in r.text.splitlines() if line.strip()]
    if "ndjson" in kind:
        return Reply(r.status_code, [json.loads(line) for line in lines])
    try:
        return Reply(r.status_code, r.json())
    except ValueError:
        return Reply(r.status_code, r.text)


def with_fields(body: dict, fields: dict) -> dict:
    """`body` with `fields` set; a dotted name sets a field of an object."""
    out = copy.deepcopy(body)
    for name, value in fields.items():
        *parents, last = name.split(".")
        at = out
        for p in parents:
            at = at.setdefault(p, {})
        at[last] = copy.deepcopy(value)
    return out


@dataclass
class Api:
    """One route: its greedy, short base request and how to read its replies."""

    path: str
    base: dict
    errors: str  # the error shape: openai, anthropic or ollama
    text: Callable[[dict], str]
    prompt_tokens: Callable[[dict], int]
    output_tokens: Callable[[dict], int]
    finish: Callable[[dict], str]
    """The finish reason, as `stop`, `length` or `tool_calls`."""
    limit: str | None = "max_tokens"
    """The field that limits the reply's tokens (none for the embedding routes)."""
    repeat: dict = dc_field(default_factory=dict)
    """A prompt whose greedy reply repeats itself (for the penalties)."""
    sampling: Callable[[dict], dict] = lambda fields: fields
    """Where sampling fields go in a request (Ollama: `options`)."""
    seed: bool = True
    fixture: str = "server"
    """The server the route is sent to (a fixture of conftest.py)."""


def _responses_text(j):
    return "".join(
        part["text"] for item in j["output"] if item["type"] == "message"
        for part in item["content"]
    )


def _responses_finish(j):
    if any(item["type"] == "function_call" for item in j["output"]):
        return "tool_calls"
    return "length" if j["status"] == "incomplete" else "stop"


def _anthropic_finish(j):
    return {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
            "tool_use": "tool_calls"}.get(j["stop_reason"], j["stop_reason"])


def _openai_text(j):
    return j["choices"][0]["message"]["content"] or ""


def _options(fields):
    return {f"options.{k}": v for k, v in fields.items()}


CHAT = Api(
    "/v1/chat/completions",
    {"model": "smollm2", "messages": [{"role": "user", "content": PROMPT}],
     "temperature": 0, "max_tokens": TOKENS},
    "openai", _openai_text,
    lambda j: j["usage"]["prompt_tokens"], lambda j: j["usage"]["completion_tokens"],
    lambda j: j["choices"][0]["finish_reason"],
    repeat={"messages": [{"role": "user", "content": REPEAT}]},
)
COMPLETIONS = Api(
    "/v1/completions",
    {"model": "smollm2", "prompt": "Once upon a time", "temperature": 0, "max_tokens": TOKENS},
    "openai", lambda j: j["choices"][0]["text"],
    lambda j: j["usage"]["prompt_tokens"], lambda j: j["usage"]["completion_tokens"],
    lambda j: j["choices"][0]["finish_reason"],
    repeat={"prompt": "apple, apple, apple,"},
)
RESPONSES = Api(
    "/v1/responses",
    {"model": "smollm2", "input": PROMPT, "temperature": 0, "max_output_tokens": TOKENS},
    "openai", _responses_text,
    lambda j: j["usage"]["input_tokens"], lambda j: j["usage"]["output_tokens"],
    _responses_finish, limit="max_output_tokens", seed=False,
)
MESSAGES = Api(
    "/v1/messages",
    {"model": "smollm2", "messages": [{"role": "user", "content": PROMPT}],
     "temperature": 0, "max_tokens": TOKENS},
    "anthropic",
    lambda j: "".join(b["text"] for b in j["content"] if b["type"] == "text"),
    lambda j: j["usage"]["input_tokens"] + j["usage"]["cache_read_input_tokens"],
    lambda j: j["usage"]["output_tokens"], _anthropic_finish, seed=False,
)
OLLAMA_CHAT = Api(
    "/api/chat",
    {"model": "smollm2", "messages": [{"role": "user", "content": PROMPT}], "stream": False,
     "options": {"temperature": 0, "num_predict": TOKENS}},
    "ollama", lambda j: j["message"]["content"],
    lambda j: j["prompt_eval_count"], lambda j: j["eval_count"], lambda j: j["done_reason"],
    limit="options.num_predict", sampling=_options,
    repeat={"messages": [{"role": "user", "content": REPEAT}]},
)
OLLAMA_GENERATE = Api(
    "/api/generate",
    {"model": "smollm2", "prompt": PROMPT, "stream": False,
     "options": {"temperature": 0, "num_predict": TOKENS}},
    "ollama", lambda j: j["response"],
    lambda j: j["prompt_eval_count"], lambda j: j["eval_count"], lambda j: j["done_reason"],
    limit="options.num_predict", sampling=_options, repeat={"prompt": REPEAT},
)


# The embedding routes: an output is the vectors (rounded, so that a
# comparison reads as equal what the same forward pass gives) or the ranking.
EMBED_TEXT = "The cat sits on the mat."


def _vectors(vs) -> str:
    return json.dumps([[round(x, 5) for x in v] if isinstance(v, list) else v for v in vs])


def _embed_api(path, base, errors, vectors, tokens) -> Api:
    return Api(path, base, errors, vectors, tokens, lambda j: 0, lambda j: "stop",
               limit=None, seed=False, fixture="embed_server")


EMBEDDINGS = _embed_api(
    "/v1/embeddings", {"model": "all-minilm", "input": EMBED_TEXT, "encoding_format": "float"},
    "openai", lambda j: _vectors([d["embedding"] for d in j["data"]]),
    lambda j: j["usage"]["prompt_tokens"])
OLLAMA_EMBED = _embed_api(
    "/api/embed", {"model": "all-minilm", "input": EMBED_TEXT},
    "ollama", lambda j: _vectors(j["embeddings"]), lambda j: j["prompt_eval_count"])
OLLAMA_EMBEDDINGS = _embed_api(
    "/api/embeddings", {"model": "all-minilm", "prompt": EMBED_TEXT},
    "ollama", lambda j: _vectors([j["embedding"]]), lambda j: 0)
RERANK_DOCUMENTS = ["The train station is two streets north of the café.",
                    "Crème brûlée is a dessert of custard and burnt sugar.",
                    "Paris has about two million inhabitants."]
RERANK = _embed_api(
    "/v1/rerank", {"model": "bert-reranker", "query": "Where is the nearest train station?",
                   "documents": RERANK_DOCUMENTS},
    "openai",
    lambda j: json.dumps([[r["index"], round(r["relevance_score"], 5), r.get("document")]
                          for r in j["results"]]),
    lambda j: j["usage"]["prompt_tokens"])

APIS = {a.path: a for a in (CHAT, COMPLETIONS, RESPONSES, MESSAGES, OLLAMA_CHAT, OLLAMA_GENERATE,
                            EMBEDDINGS, OLLAMA_EMBED, OLLAMA_EMBEDDINGS, RERANK)}


class Ctx:
    """A probe's view of one route on the running server."""

    _cache: dict = {}

    def __init__(self, server, api: Api):
        self.server, self.api = server, api

    def send(self, body: dict) -> Reply:
        return post(self.server, self.api.path, body)

    def ask(self, fields: dict | None = None, body: dict | None = None) -> dict:
        """The reply (which must be a 200) to the base request with `fields`."""
        body = with_fields(body if body is not None else self.api.base, fields or {})
        r = self.send(body)
        assert r.status == 200, f"{self.api.path} {json.dumps(body)[:300]} -> {r.status} {r.body}"
        return r.body

    def cached(self, key, fields: dict) -> dict:
        k = (self.server.base, self.api.path, key)
        if k not in Ctx._cache:
            Ctx._cache[k] = self.ask(fields)
        return Ctx._cache[k]

    @property
    def baseline(self) -> dict:
        return self.cached("baseline", {})

    def short(self, fields: dict | None = None) -> dict:
        """The base request limited to 4 tokens, with `fields`: enough to
        see that metadata changes nothing, quickly."""
        limit = {self.api.limit: SHORT} if self.api.limit else {}
        return with_fields(self.api.base, {**limit, **(fields or {})})

    @property
    def short_baseline(self) -> dict:
        k = (self.server.base, self.api.path, "short")
        if k not in Ctx._cache:
            Ctx._cache[k] = self.ask(body=self.short())
        return Ctx._cache[k]

    def hot_fields(self, attempt: int = 0) -> dict:
        """Sampling hot: temperature 1.5 (1, Anthropic's most), nothing cut,
        seeded by `attempt` where the route takes a seed."""
        t = 1.0 if self.api.errors == "anthropic" else 1.5
        fields = {"temperature": t, "top_p": 1.0}
        if self.api.errors == "ollama":
            fields["top_k"] = 0
        if self.api.seed:
            fields["seed"] = HOT_SEED + attempt
        return self.api.sampling(fields)

    def hot(self, attempt: int) -> dict:
        """A reply sampled hot (the same for an attempt, where there is a seed)."""
        if self.api.seed:
            return self.cached(("hot", attempt), self.hot_fields(attempt))
        return self.ask(self.hot_fields(attempt))


# --- Probes --------------------------------------------------------------------

@dataclass
class Field:
    """A row's sample: the value to send, other fields it needs with it, and
    for an applied field the probe of its effect, `effect(ctx, reply)`, given
    the reply to the request with the field set."""

    sample: Any = None
    also: dict | Callable = dc_field(default_factory=dict)
    """Fields the sample needs with it; `also(ctx) -> dict` where they
    depend on the route."""
    effect: Callable | None = None
    body: Callable | None = None
    """Builds the request itself where the field is not a dotted path
    (a field of a message): `body(ctx) -> dict`."""
    ok: Any = None
    """For a refused field: a value that asks for what lucid does anyway,
    accepted (a 200)."""
    bad: Any = None
    """For an accepted field: a value that asks for more, refused."""

    def value(self, ctx):
        return self.sample(ctx) if callable(self.sample) else self.sample


def applied(sample, effect, **also):
    return Field(sample, also, effect)


def accepted(sample, bad=None):
    return Field(sample, bad=bad)


def refused(sample, ok=None, **also):
    return Field(sample, also, ok=ok)


def differs(c: Ctx, r: dict):
    """The field changes the greedy reply."""
    assert c.api.text(r) != c.api.text(c.baseline), c.api.text(r)


def penalty(sample):
    """A penalty, sent with the route's repetitive prompt: the greedy reply
    is another than without it."""
    def effect(c: Ctx, r: dict):
        plain = c.cached("repeat", c.api.repeat)
        assert c.api.text(r) != c.api.text(plain), (c.api.text(r), c.api.text(plain))
    return Field(sample, lambda c: c.api.repeat, effect)


def more_prompt(c: Ctx, r: dict):
    """The field adds to what the model reads."""
    assert c.api.prompt_tokens(r) > c.api.prompt_tokens(c.baseline), (r, c.baseline)


def caps(c: Ctx, r: dict):
    """A limit of 3 tokens: the reply is 3 tokens, cut by the limit."""
    assert c.api.output_tokens(r) == 3 and c.api.finish(r) == "length", r


def stop_word(c: Ctx) -> str:
    """A word from the middle of the greedy reply."""
    words = re.findall(r"[A-Za-z]{4,}", c.api.text(c.baseline))
    assert len(words) >= 3, c.baseline
    return words[len(words) // 2]


def stops(c: Ctx, r: dict):
    word = stop_word(c)
    base, text = c.api.text(c.baseline), c.api.text(r)
    assert word not in text and base.startswith(text) and len(text) < len(base), (word, text)
    assert c.api.finish(r) == "stop", r


def sampled_differs(c: Ctx, r: dict):
    """Sampled hot (`r`, or within two more tries), the reply is another
    than the greedy one."""
    greedy = c.api.text(c.baseline)
    if c.api.text(r) != greedy:
        return
    texts = [c.api.text(c.hot(i)) for i in (1, 2)]
    assert any(t != greedy for t in texts), (greedy, texts)


def hot(sample, effect):
    """A sampling field, sent with the route's hot sampling fields."""
    return Field(sample, lambda c: c.hot_fields(0), effect)


def cuts_to_greedy(c: Ctx, r: dict):
    """Sampled hot, the field leaves only the most likely token (`r` is the
    greedy reply); without it the reply differs."""
    assert c.api.text(r) == c.api.text(c.baseline), r
    sampled_differs(c, c.hot(0))


def seeded(c: Ctx, r: dict):
    """Sampled hot with a seed (`r`), the reply repeats with that seed;
    other seeds give another."""
    first, again = c.api.text(r), c.api.text(c.hot(0))
    assert first == again, (first, again)
    others = [c.api.text(c.hot(i)) for i in (1, 2)]
    assert any(t != first for t in others), (first, others)


def every(*effects):
    """All of these effects."""
    def effect(c: Ctx, r: dict):
        for e in effects:
            e(c, r)
    return effect


def shorter_prompt(c: Ctx, r: dict):
    """The field takes something away from what the model reads."""
    assert c.api.prompt_tokens(r) < c.api.prompt_tokens(c.baseline), (r, c.baseline)


def names_model(c: Ctx, r: dict):
    """The field picks the model: another name is a 404 that names it."""
    bad = c.send(with_fields(c.api.base, {"model": "no-such-model"}))
    assert bad.status == 404, bad.body
    assert "no-such-model" in json.dumps(bad.body), bad.body


SCHEMA = {"type": "object", "properties": {"a": {"type": "boolean"}},
          "required": ["a"], "additionalProperties": False}


def json_reply(c: Ctx, r: dict):
    reply = json.loads(c.api.text(r))
    assert set(reply) == {"a"} and isinstance(reply["a"], bool), reply


def streams_same(c: Ctx, r: list):
    """The streamed reply is the greedy reply."""
    path = c.api.path
    if path == "/v1/chat/completions":
        assert r[-1] == "[DONE]"
        text = "".join(e["choices"][0]["delta"].get("content") or ""
                       for e in r[:-1] if e.get("choices"))
    elif path == "/v1/completions":
        assert r[-1] == "[DONE]"
        text = "".join(e["choices"][0]["text"] for e in r[:-1] if e.get("choices"))
    elif path == "/v1/responses":
        assert r[-1]["type"] in ("response.completed", "response.incomplete"), r[-1]
        text = "".join(e["delta"] for e in r if e["type"] == "response.output_text.delta")
    elif path == "/v1/messages":
        assert r[-1]["type"] == "message_stop", r[-1]
        text = "".join(e["delta"]["text"] for e in r if e["type"] == "content_block_delta")
    else:
        assert r[-1]["done"] is True and len(r) > 2, r
        text = "".join(c.api.text(e) for e in r)
    assert text == c.api.text(c.baseline), text


def usage_chunk(c: Ctx, r: list):
    """Streamed, a last chunk has the usage, which is absent without the field."""
    usage = [e["usage"] for e in r[:-1] if e.get("usage")]
    assert len(usage) == 1 and usage[0]["completion_tokens"] == TOKENS, r
    plain = c.send(with_fields(c.api.base, {"stream": True})).body
    assert not any("usage" in e for e in plain[:-1]), plain


def two_choices(c: Ctx, r: dict):
    assert len(r["choices"]) == 2, r


def chat_logprobs(c: Ctx, r: dict):
    lp = r["choices"][0]["logprobs"]["content"]
    assert len(lp) == c.api.output_tokens(r) and all(e["top_logprobs"] == [] for e in lp), lp


def chat_top_logprobs(c: Ctx, r: dict):
    lp = r["choices"][0]["logprobs"]["content"]
    assert lp and all(len(e["top_logprobs"]) == 3 for e in lp), lp


def completion_logprobs(c: Ctx, r: dict):
    lp = r["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == c.api.output_tokens(r), lp
    assert all(1 <= len(top) <= 2 for top in lp["top_logprobs"]), lp


# A function tool (OpenAI's chat shape), and few-shot conversations in which
# the model calls it twice in one reply, so that a third question gets two
# calls unless parallel calls are off.
WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}}
CHAT_TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER_PARAMS}}]
RESPONSES_TOOLS = [{"type": "function", "name": "weather", "parameters": WEATHER_PARAMS}]
ANTHROPIC_TOOLS = [{"name": "weather", "input_schema": WEATHER_PARAMS}]
FEW_SHOT = [("Paris", "Rome"), ("Oslo", "Bern")]
ASK = "Lima and Riga?"


def chat_two_calls():
    msgs = []
    for a, b in FEW_SHOT:
        msgs.append({"role": "user", "content": f"{a} and {b}?"})
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{c}", "type": "function",
             "function": {"name": "weather", "arguments": json.dumps({"city": c})}}
            for c in (a, b)]})
    return msgs + [{"role": "user", "content": ASK}]


def responses_two_calls():
    items = []
    for a, b in FEW_SHOT:
        items.append({"role": "user", "content": f"{a} and {b}?"})
        items += [{"type": "function_call", "call_id": f"call_{c}", "name": "weather",
                   "arguments": json.dumps({"city": c})} for c in (a, b)]
    return items + [{"role": "user", "content": ASK}]


def anthropic_two_calls():
    msgs = []
    for a, b in FEW_SHOT:
        msgs.append({"role": "user", "content": f"{a} and {b}?"})
        msgs.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"toolu_{c}", "name": "weather", "input": {"city": c}}
            for c in (a, b)]})
    return msgs + [{"role": "user", "content": ASK}]


def calls(c: Ctx, r: dict) -> list[str]:
    """The cities of the reply's calls of `weather`."""
    if c.api.path == "/v1/chat/completions":
        found = [(t["function"]["name"], json.loads(t["function"]["arguments"]))
                 for t in r["choices"][0]["message"].get("tool_calls", [])]
    elif c.api.path == "/v1/responses":
        found = [(o["name"], json.loads(o["arguments"]))
                 for o in r["output"] if o["type"] == "function_call"]
    else:
        found = [(b["name"], b["input"]) for b in r["content"] if b["type"] == "tool_use"]
    assert all(name == "weather" for name, _ in found), found
    return [args.get("city") for _, args in found]


def one_call(c: Ctx, r: dict):
    """The reply is a call of the tool."""
    assert len(calls(c, r)) == 1 and c.api.finish(r) == "tool_calls", r


def parallel_off(few_shot: dict):
    """Parallel calls are on by default: the few-shot question gets two
    calls; with the field set, one."""
    def effect(c: Ctx, r: dict):
        both = c.ask(few_shot)
        assert calls(c, both) == ["Lima", "Riga"], both
        assert calls(c, r) == ["Lima"], r
    return effect


# A forced call of `weather` fits in 32 tokens, two calls (the few-shot
# requests) in 60.
CALL_TOKENS = 32
WEATHER_ASK = "What is the weather in Paris?"
CHAT_FEW_SHOT = {"messages": chat_two_calls(), "tools": CHAT_TOOLS, "max_tokens": 60}
RESPONSES_FEW_SHOT = {"input": responses_two_calls(), "tools": RESPONSES_TOOLS,
                      "max_output_tokens": 60}
ANTHROPIC_FEW_SHOT = {"messages": anthropic_two_calls(), "tools": ANTHROPIC_TOOLS,
                      "max_tokens": 60}


# Fields every OpenAI route accepts as metadata (`params::METADATA_FIELDS`).
OPENAI_METADATA = {
    "user": "user-1",
    "metadata": {"run": "conformance"},
    "store": False,
    "service_tier": "auto",
    "prompt_cache_key": "conformance",
    "prompt_cache_retention": "24h",
    "safety_identifier": "user-1-hash",
}


def matches(pattern: str):
    """The reply is all of `pattern`."""
    def effect(c: Ctx, r: dict):
        assert re.fullmatch(pattern, c.api.text(r)), c.api.text(r)
    return effect


# vLLM's output constraints, applied on the chat and completions routes.
VLLM_STRUCTURED = {
    "structured_outputs": applied({"json": SCHEMA}, json_reply),
    "guided_json": applied(SCHEMA, json_reply),
    "guided_regex": applied("[0-9]{3}", matches("[0-9]{3}")),
    "guided_choice": applied(["alpha", "beta"], matches("alpha|beta")),
    "guided_grammar": refused("root ::= \"yes\""),
    "guided_decoding_backend": refused("xgrammar"),
    "guided_whitespace_pattern": refused("[ ]?"),
}
# Sampling fields of vLLM's and others that lucid refuses by name.
VLLM_REFUSED = {
    "min_tokens": 4,
    "use_beam_search": True,
    "length_penalty": 1.2,
    "repetition_penalty": 1.2,
    "typical_p": 0.9,
    "mirostat": 2,
    "tfs_z": 0.9,
}


def _openai_common(api_max: str) -> dict[str, Field]:
    return {
        "model": applied("smollm2", names_model),
        "stream": applied(True, streams_same),
        "temperature": hot(1.5, sampled_differs),
        "top_p": hot(0.01, cuts_to_greedy),
        api_max: applied(3, caps),
        **{k: accepted(v) for k, v in OPENAI_METADATA.items()},
    }


def ignore_eos_field(short: dict) -> Field:
    """`ignore_eos` on a request whose reply ends by itself before 24 tokens."""
    def effect(c: Ctx, r: dict):
        ends = c.ask({**short, "max_tokens": 24})
        assert c.api.finish(ends) == "stop" and c.api.output_tokens(ends) < 24, ends
        assert c.api.finish(r) == "length" and c.api.output_tokens(r) == 24, r
    return applied(True, effect, **short, max_tokens=24)


def chat_name(c: Ctx) -> dict:
    msgs = [{"role": "user", "content": "Hi, I am Ada.", "name": "Ada"}]
    return with_fields(c.api.base, {"messages": msgs})


def name_shown(c: Ctx, r: dict):
    plain = c.ask({"messages": [{"role": "user", "content": "Hi, I am Ada."}]})
    assert c.api.prompt_tokens(r) > c.api.prompt_tokens(plain), (r, plain)


FIELDS: dict[str, dict[str, Field]] = {}

FIELDS["/v1/chat/completions"] = {
    **_openai_common("max_tokens"),
    "messages": applied([{"role": "user", "content": "Say OK."}], differs),
    "messages[].name": Field(body=chat_name, effect=name_shown),
    "stream_options.include_usage": applied(True, usage_chunk, stream=True),
    "stream_options.include_obfuscation": accepted(True),
    "top_k": hot(1, cuts_to_greedy),
    "min_p": hot(1.0, cuts_to_greedy),
    "max_completion_tokens": applied(3, caps),
    "stop": applied(lambda c: [stop_word(c)], stops),
    "seed": hot(HOT_SEED, seeded),
    "n": applied(2, two_choices),
    "presence_penalty": penalty(2.0),
    "frequency_penalty": penalty(2.0),
    "repeat_penalty": penalty(1.5),
    "logprobs": applied(True, chat_logprobs),
    "top_logprobs": applied(3, chat_top_logprobs, logprobs=True),
    "response_format": applied(
        {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}, json_reply),
    "tools": applied(CHAT_TOOLS, more_prompt),
    "tool_choice": applied({"type": "function", "function": {"name": "weather"}}, one_call,
                           tools=CHAT_TOOLS, max_tokens=CALL_TOKENS,
                           messages=[{"role": "user", "content": WEATHER_ASK}]),
    "parallel_tool_calls": applied(False, parallel_off(CHAT_FEW_SHOT), **CHAT_FEW_SHOT),
    "ignore_eos": ignore_eos_field({"messages": [{"role": "user", "content": "Hi"}]}),
    "logit_bias": refused({"1": -100}),
    "modalities": accepted(["text"], bad=["text", "audio"]),
    "audio": refused({"voice": "alloy", "format": "wav"}),
    "prediction": refused({"type": "content", "content": "The sea"}),
    "web_search_options": refused({}),
    "functions": refused([{"name": "weather", "parameters": WEATHER_PARAMS}]),
    "function_call": refused("auto"),
    "reasoning_effort": refused("low"),
    "verbosity": refused("low"),
    "reasoning": refused({"effort": "low"}),
    **VLLM_STRUCTURED,
    **{k: refused(v) for k, v in VLLM_REFUSED.items()},
}

FIELDS["/v1/completions"] = {
    **_openai_common("max_tokens"),
    "prompt": applied("The sea is", differs),
    "stream_options.include_usage": applied(True, usage_chunk, stream=True),
    "stream_options.include_obfuscation": accepted(True),
    "top_k": hot(1, cuts_to_greedy),
    "min_p": hot(1.0, cuts_to_greedy),
    "stop": applied(lambda c: [stop_word(c)], stops),
    "seed": hot(HOT_SEED, seeded),
    "n": applied(2, two_choices),
    "presence_penalty": penalty(2.0),
    "frequency_penalty": penalty(2.0),
    "repeat_penalty": penalty(1.5),
    "logprobs": applied(2, completion_logprobs),
    "ignore_eos": ignore_eos_field({"prompt": "The capital of France is"}),
    "echo": refused(True, ok=False),
    "suffix": refused(" The end."),
    "best_of": refused(2, ok=1),
    "logit_bias": refused({"1": -100}),
    **VLLM_STRUCTURED,
    **{k: refused(v) for k, v in VLLM_REFUSED.items()},
}

FIELDS["/v1/responses"] = {
    **_openai_common("max_output_tokens"),
    "input": applied("Say OK.", differs),
    "instructions": applied("You are a poet who writes about the sea in short lines.",
                            every(more_prompt, differs)),
    "text.format": applied({"type": "json_schema", "name": "a", "schema": SCHEMA}, json_reply),
    "text.verbosity": refused("low"),
    "tools": applied(RESPONSES_TOOLS, more_prompt),
    "tool_choice": applied({"type": "function", "name": "weather"}, one_call,
                           tools=RESPONSES_TOOLS, max_output_tokens=CALL_TOKENS,
                           input=WEATHER_ASK),
    "parallel_tool_calls": applied(False, parallel_off(RESPONSES_FEW_SHOT),
                                   **RESPONSES_FEW_SHOT),
    "truncation": refused("auto", ok="disabled"),
    "reasoning": refused({"effort": "low"}, ok={"effort": "none"}),
    "previous_response_id": refused("resp_123"),
    "conversation": refused("conv_123"),
    "include": refused(["message.output_text.logprobs"]),
    "background": refused(True),
    "max_tool_calls": refused(1),
    "prompt": refused({"id": "pmpt_123"}),
    "top_logprobs": refused(3),
    "stream_options.include_obfuscation": accepted(False),
    "stream_options.include_usage": refused(True, stream=True),
    "structured_outputs": refused({"json": SCHEMA}),
    "guided_json": refused(SCHEMA),
    "guided_regex": refused("[0-9]{3}"),
    "guided_choice": refused(["alpha", "beta"]),
}

FIELDS["/v1/messages"] = {
    "model": applied("smollm2", names_model),
    "messages": applied([{"role": "user", "content": "Say OK."}], differs),
    "max_tokens": applied(3, caps),
    "system": applied("You are a poet who writes about the sea in short lines.",
                      every(more_prompt, differs)),
    "stop_sequences": applied(lambda c: [stop_word(c)], stops),
    "stream": applied(True, streams_same),
    "temperature": hot(1.0, sampled_differs),
    "top_p": hot(0.01, cuts_to_greedy),
    "top_k": hot(1, cuts_to_greedy),
    "tools": applied(ANTHROPIC_TOOLS, more_prompt),
    "tool_choice": applied({"type": "tool", "name": "weather"}, one_call, tools=ANTHROPIC_TOOLS,
                           max_tokens=CALL_TOKENS,
                           messages=[{"role": "user", "content": WEATHER_ASK}]),
    "tool_choice.disable_parallel_tool_use": applied(
        True, parallel_off(ANTHROPIC_FEW_SHOT), **ANTHROPIC_FEW_SHOT,
        **{"tool_choice.type": "auto"}),
    "output_config.format": applied({"type": "json_schema", "schema": SCHEMA}, json_reply),
    "output_config.effort": refused("low"),
    "thinking": refused({"type": "enabled", "budget_tokens": 1024}, ok={"type": "disabled"}),
    "metadata": accepted({"user_id": "user-1"}),
    "service_tier": accepted("auto"),
    "inference_geo": accepted("us"),
    "speed": accepted("standard"),
    "user_profile_id": accepted("profile-1"),
    "workspace_id": accepted("workspace-1"),
    "cache_control": accepted({"type": "ephemeral"}),
    "diagnostics": accepted({"cache": True}),
    "container": refused("container_123"),
    "mcp_servers": refused([{"type": "url", "url": "https://example.com/sse", "name": "x"}]),
    "context_management": refused({"edits": []}),
}


def keeps_alive(c: Ctx, r: dict):
    """`keep_alive` sets when the idle model is unloaded (`/api/ps`
    `expires_at`); a negative one keeps it for as long as the server runs."""
    name = f"{c.api.base['model']}:latest"

    def expires():
        ps = CLIENT.get(f"{c.server.base}/api/ps").json()
        return [m.get("expires_at") for m in ps["models"] if m["name"] == name]
    at = expires()
    c.ask({"keep_alive": -1})
    forever = expires()
    assert at and at[0] and forever == [None], (at, forever)


def ollama_tool_name(c: Ctx) -> dict:
    return with_fields(c.api.base, {"messages": ollama_tool_turns("weather")})


def ollama_tool_turns(name):
    result = {"role": "tool", "content": "sunny"}
    if name:
        result["tool_name"] = name
    return [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
            result]


def tool_name_shown(c: Ctx, r: dict):
    plain = c.ask({"messages": ollama_tool_turns(None)})
    assert c.api.prompt_tokens(r) > c.api.prompt_tokens(plain), (r, plain)


def ollama_images(c: Ctx) -> dict:
    return with_fields(c.api.base, {"messages": [
        {"role": "user", "content": "What is this?", "images": ["aGk="]}]})


OLLAMA_COMMON = {
    "model": applied("smollm2", names_model),
    "stream": applied(True, streams_same),
    "format": applied(SCHEMA, json_reply),
    "keep_alive": applied("10m", keeps_alive),
    "think": refused(True, ok=False),
    "template": refused("{{ .Prompt }}"),
    "context": refused([1, 2, 3]),
    "logprobs": refused(True),
}

FIELDS["/api/chat"] = {
    **OLLAMA_COMMON,
    "messages": applied([{"role": "user", "content": "Say OK."}], differs),
    "messages[].images": Field(body=ollama_images),
    "messages[].tool_name": Field(body=ollama_tool_name, effect=tool_name_shown),
    "tools": applied(CHAT_TOOLS, more_prompt),
}

FIELDS["/api/generate"] = {
    **OLLAMA_COMMON,
    "prompt": applied("Say OK.", differs),
    "system": applied("You are a poet who writes about the sea in short lines.",
                      every(more_prompt, differs)),
    "raw": applied(True, shorter_prompt),
    "suffix": refused(" The end.", ok=""),
    "images": refused(["aGk="], ok=[]),
}


def num_ctx(c: Ctx) -> int:
    return c.api.prompt_tokens(c.baseline) + 3


def repeat_window(c: Ctx, r: dict):
    """With the repetitive prompt, `repeat_last_n: 1` penalizes only the
    last token (another reply than the default window of 64); 0 turns the
    penalties off, as in Ollama."""
    penalized = c.ask({**c.api.repeat, "options.repeat_penalty": 2.0})
    assert c.api.text(r) != c.api.text(penalized), r
    off = c.ask({**c.api.repeat, "options.repeat_penalty": 2.0, "options.repeat_last_n": 0})
    free = c.ask({**c.api.repeat, "options.repeat_penalty": 1.0})
    assert c.api.text(off) == c.api.text(free), (
        "repeat_last_n 0 should turn the penalties off", c.api.text(off), c.api.text(free))


RUNTIME_OPTIONS = {
    "num_thread": 2, "num_gpu": 0, "main_gpu": 0, "use_mmap": True, "use_mlock": False,
    "num_batch": 512, "low_vram": False, "f16_kv": True, "numa": False, "vocab_only": False,
    "logits_all": False, "embedding_only": False, "num_keep": 4,
}

# Ollama's options, sent to both /api/chat and /api/generate.
FIELDS["options"] = {
    "options.num_predict": applied(3, caps),
    "options.temperature": hot(1.5, sampled_differs),
    "options.top_k": hot(1, cuts_to_greedy),
    "options.top_p": hot(0.01, cuts_to_greedy),
    "options.min_p": hot(1.0, cuts_to_greedy),
    "options.seed": hot(HOT_SEED, seeded),
    "options.stop": applied(lambda c: [stop_word(c)], stops),
    "options.repeat_penalty": penalty(2.0),
    "options.repeat_last_n": Field(
        1, lambda c: {**c.api.repeat, "options.repeat_penalty": 2.0}, repeat_window),
    "options.presence_penalty": penalty(2.0),
    "options.frequency_penalty": penalty(2.0),
    "options.num_ctx": applied(num_ctx, caps),
    **{f"options.{k}": accepted(v) for k, v in RUNTIME_OPTIONS.items()},
    "options.mirostat": refused(2),
    "options.mirostat_tau": refused(5.0),
    "options.mirostat_eta": refused(0.1),
    "options.typical_p": refused(0.9),
    "options.tfs_z": refused(0.9),
    "options.penalize_newline": refused(True),
}

# --- The embedding routes' probes ----------------------------------------------

# Longer than all-MiniLM-L6-v2's 256 tokens.
LONG_TEXT = "Embeddings turn a text into a vector. " * 60


def one_embedding_of(width: int):
    def effect(c: Ctx, r: dict):
        vectors = json.loads(c.api.text(r))
        assert len(vectors) == 1 and len(vectors[0]) == width, r
    return effect


def base64_floats(c: Ctx, r: dict):
    """The vector as the base64 of its little-endian float32 bytes: the
    same numbers as the float reply."""
    data = base64.b64decode(r["data"][0]["embedding"])
    floats = array.array("f", data).tolist()
    plain = c.baseline["data"][0]["embedding"]
    assert floats == array.array("f", plain).tolist()


def truncates(c: Ctx, r: dict):
    """`truncate: true` (the default) cuts a long text to the model's 256
    tokens; `false` refuses it, naming `input`."""
    assert c.api.prompt_tokens(r) == 256, r
    bad = c.send(with_fields(c.api.base, {"input": LONG_TEXT, "truncate": False}))
    assert bad.status == 400 and "input" in bad.body["error"], bad.body


def tokens_cut_to(n: int):
    def effect(c: Ctx, r: dict):
        assert c.api.prompt_tokens(r) == n, r
    return effect


def top_one(c: Ctx, r: dict):
    """Only the best result, the one the full ranking has first."""
    full = c.baseline["results"]
    assert [x["index"] for x in r["results"]] == [full[0]["index"]], (r, full)


def with_documents(c: Ctx, r: dict):
    """Each result carries its document's text; without the field none does."""
    for x in r["results"]:
        assert x["document"] == {"text": RERANK_DOCUMENTS[x["index"]]}, x
    assert all("document" not in x for x in c.baseline["results"])


FIELDS["/v1/embeddings"] = {
    "model": applied("all-minilm", names_model),
    "input": applied("Stock markets fell sharply.", differs),
    "encoding_format": applied("base64", base64_floats),
    "dimensions": applied(64, one_embedding_of(64)),
    "user": accepted("user-1"),
    "truncate_prompt_tokens": refused(8),
}

FIELDS["/api/embed"] = {
    "model": applied("all-minilm", names_model),
    "input": applied("Stock markets fell sharply.", differs),
    "truncate": applied(True, truncates, input=LONG_TEXT),
    "dimensions": applied(64, one_embedding_of(64)),
    "keep_alive": applied("10m", keeps_alive),
    "options.num_ctx": applied(5, tokens_cut_to(5)),
    "options.temperature": accepted(0.5),
    "options.num_thread": accepted(2),
}

FIELDS["/api/embeddings"] = {
    "model": applied("all-minilm", names_model),
    "prompt": applied("Stock markets fell sharply.", differs),
    "keep_alive": applied("10m", keeps_alive),
    "options.num_ctx": applied(5, differs),
    "options.temperature": accepted(0.5),
}

FIELDS["/v1/rerank"] = {
    "model": applied("bert-reranker", names_model),
    "query": applied("How many people live in Paris?", differs),
    "documents": applied(RERANK_DOCUMENTS[::-1], differs),
    "top_n": applied(1, top_one),
    "return_documents": applied(True, with_documents),
    "rank_fields": refused(["text"]),
    "max_chunks_per_doc": refused(4),
}

# Where each table's rows are sent.
TABLE_ROUTES = {name: [name] for name in FIELDS}
TABLE_ROUTES["options"] = ["/api/chat", "/api/generate"]


# --- The checks ----------------------------------------------------------------

def test_tables_match_the_probes():
    """Every row has a sample here and every sample a row, table by table."""
    assert TABLE_ERROR is None, TABLE_ERROR
    problems = []
    for table in sorted(set(TABLES) | set(FIELDS)):
        in_table, here = set(TABLES.get(table, {})), set(FIELDS.get(table, {}))
        for f in sorted(in_table - here):
            problems.append(f"{table}: row `{f}` has no sample or probe in this test")
        for f in sorted(here - in_table):
            problems.append(f"{table}: `{f}` is probed here but has no row in SERVER.md")
        for f in sorted(in_table & here):
            if TABLES[table][f] == "applied" and FIELDS[table][f].effect is None:
                problems.append(f"{table}: `{f}` is applied, but this test has no probe of its effect")
    assert not problems, "\n".join(problems)


def _cases():
    rows = {(t, f) for t, fs in TABLES.items() for f in fs}
    rows |= {(t, f) for t, fs in FIELDS.items() for f in fs}
    for table, name in sorted(rows):
        for route in TABLE_ROUTES.get(table, [table]):
            yield pytest.param(table, route, name, id=f"{route} {name}")


def error_names(api: Api, reply: Reply, name: str) -> bool:
    """Whether a 400 names the field: OpenAI's `param` (with indexes as
    `[]`), the start of Anthropic's message, the field (its last part) in
    Ollama's text."""
    body = reply.body
    if api.errors == "openai":
        param = re.sub(r"\[\d+\]", "[]", body["error"].get("param") or "")
        return param == name or param.startswith((f"{name}.", f"{name}["))
    if api.errors == "anthropic":
        message = re.sub(r"\[\d+\]", "[]", body["error"]["message"])
        return message.startswith(f"{name}:") or message.startswith(f"{name}.")
    return name.split(".")[-1] in body["error"]


@pytest.mark.parametrize("table,route,name", list(_cases()))
def test_field(request, table, route, name):
    assert TABLE_ERROR is None, TABLE_ERROR
    verdict = TABLES.get(table, {}).get(name)
    probe = FIELDS.get(table, {}).get(name)
    assert verdict, f"`{name}` has no row in SERVER.md's table for {table}"
    assert probe, f"the row `{name}` of {table} has no sample in this test"
    assert route in APIS, f"SERVER.md has a table for {route}, which this test does not know"
    c = Ctx(request.getfixturevalue(APIS[route].fixture), APIS[route])
    if probe.body:
        body = probe.body(c)
    else:
        also = probe.also(c) if callable(probe.also) else probe.also
        fields = {**also, name: probe.value(c)}
        body = with_fields(c.api.base, fields) if verdict == "applied" else c.short(fields)
    reply = c.send(body)
    if verdict == "refused":
        assert reply.status == 400, (
            f"`{name}` is listed as refused: {json.dumps(body)[:300]} -> {reply.status} "
            f"{str(reply.body)[:300]}")
        assert error_names(c.api, reply, name), f"the error does not name `{name}`: {reply.body}"
        if probe.ok is not None:
            c.ask(body=c.short({name: probe.ok}))
        return
    assert reply.status == 200, (
        f"`{name}` is listed as {verdict}: {json.dumps(body)[:300]} -> {reply.status} "
        f"{str(reply.body)[:300]}")
    if verdict == "accepted":
        # Metadata asks nothing of the model: the greedy reply is the same.
        assert c.api.text(reply.body) == c.api.text(c.short_baseline), reply.body
        if probe.bad is not None:
            bad = c.send(c.short({name: probe.bad}))
            assert bad.status == 400 and error_names(c.api, bad, name), bad.body
        return
    assert probe.effect, f"`{name}` is applied, but this test has no probe of its effect"
    probe.effect(c, reply.body)


# Unknown keys inside the objects of a request are refused by name as well:
# an ignored key there could change the answer as much as one at the top.
NESTED = [
    ("/v1/chat/completions",
     {"messages": [{"role": "user", "content": "Hi", "cache": True}]}, "messages[].cache"),
    ("/v1/chat/completions",
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", "lang": "en"}]}]},
     "messages[].content[].lang"),
    ("/v1/chat/completions", {"stream_options": {"chunk_size": 4}}, "stream_options.chunk_size"),
    ("/v1/chat/completions",
     {"tools": [{"type": "function", "function": {"name": "f", "timeout": 3}}]},
     "tools[].function.timeout"),
    ("/v1/chat/completions", {"response_format": {"type": "json_object", "schema": {}}},
     "response_format"),
    ("/v1/messages",
     {"messages": [{"role": "user", "content": "Hi", "name": "Bob"}]}, "messages[].name"),
    ("/v1/messages", {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "auto", "why": "x"}},
     "tool_choice.why"),
    ("/v1/responses", {"text": {"format": {"type": "text", "strict": True}}}, "text.format"),
    ("/api/chat",
     {"messages": [{"role": "assistant", "content": "Hi", "thinking": "Hmm."},
                   {"role": "user", "content": "Hi"}]}, "messages[].thinking"),
    ("/api/embed", {"options": {"num_gpu_layers": 3}}, "options.num_gpu_layers"),
    ("/v1/rerank", {"documents": [{"text": "a", "title": "t"}]}, "documents[].title"),
]


@pytest.mark.parametrize("route,fields,named", NESTED)
def test_nested_unknown_keys_are_refused(request, route, fields, named):
    c = Ctx(request.getfixturevalue(APIS[route].fixture), APIS[route])
    reply = c.send(c.short(fields))
    assert reply.status == 400, (route, fields, reply.status, reply.body)
    assert error_names(c.api, reply, named), reply.body
