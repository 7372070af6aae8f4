"""lucid serve against the libraries people build on the SDKs: LiteLLM,
LangChain (OpenAI and Ollama chat models), instructor and Simon Willison's
`llm`, each through its tool-calling path, unmodified; and LangChain's and
LiteLLM's embeddings on all-MiniLM-L6-v2, which must give the vectors
`lucid embed` gives.

The model is SmolLM2-135M-Instruct: its chat template has no tools, so lucid
shows them with its generic rendering (SERVER.md). Left to choose (`auto`),
a model this small answers in prose, so the calls here are asked for the way
each library can ask: `tool_choice` where it has one (OpenAI-shaped
clients), otherwise a `format`/schema in the shape of a call, which lucid
reads back as a call. Arguments are checked against the tool's schema.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import API_KEY, lucid_embed

QUESTION = "What is the weather in Paris?"
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
          "required": ["city"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.", "parameters": PARAMS}}
# A reply in the shape of a call to get_weather, for clients without tool_choice.
CALL_SCHEMA = {"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
               "properties": {"name": {"const": "get_weather"}, "arguments": PARAMS}}


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18 degrees and sunny in {city}"


# --- LiteLLM --------------------------------------------------------------

def test_litellm_tool_calls_plain_streamed_and_answered(server):
    import litellm

    args = dict(model="openai/smollm2", api_base=f"{server.base}/v1", api_key=API_KEY,
                temperature=0, max_tokens=60)
    messages = [{"role": "user", "content": QUESTION}]
    asked = litellm.completion(messages=messages, tools=[WEATHER], tool_choice="required", **args)
    assert asked.choices[0].finish_reason == "tool_calls"
    call = asked.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, PARAMS)
    # Streamed, put together by LiteLLM's own chunk builder.
    chunks = list(litellm.completion(messages=messages, tools=[WEATHER], tool_choice="required",
                                     stream=True, **args))
    built = litellm.stream_chunk_builder(chunks, messages=messages)
    streamed = built.choices[0].message.tool_calls[0]
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == arguments
    # The agent loop: the result goes back, the model answers in text.
    messages += [asked.choices[0].message.model_dump(),
                 {"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)}]
    answer = litellm.completion(messages=messages, tools=[WEATHER], **args)
    assert answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls


def test_litellm_ollama_chat_tools(server):
    import litellm

    r = litellm.completion(
        model="ollama_chat/smollm2", api_base=server.base, api_key=API_KEY,
        messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "call", "schema": CALL_SCHEMA}},
        temperature=0, max_tokens=60,
    )
    calls = r.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather", r
    jsonschema.validate(json.loads(calls[0].function.arguments), PARAMS)


# --- LangChain ------------------------------------------------------------

def test_langchain_openai_bind_tools_agent_loop_and_structured_output(server):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    weather = tool(get_weather)
    llm = ChatOpenAI(base_url=f"{server.base}/v1", api_key=API_KEY, model="smollm2",
                     temperature=0, max_tokens=60, max_retries=0)
    bound = llm.bind_tools([weather], tool_choice="required")
    messages = [HumanMessage(QUESTION)]
    asked = bound.invoke(messages)
    assert [c["name"] for c in asked.tool_calls] == ["get_weather"]
    call = asked.tool_calls[0]
    assert isinstance(call["args"]["city"], str) and call["args"]["city"]
    streamed = None
    for chunk in bound.stream(messages):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed.tool_calls == [dict(call, id=streamed.tool_calls[0]["id"])]
    # The tool runs; LangChain sends its result back; the model answers.
    result = weather.invoke(call)
    assert isinstance(result, ToolMessage)
    answer = llm.bind_tools([weather]).invoke(messages + [asked, result])
    assert answer.content and not answer.tool_calls

    class City(BaseModel):
        """A city and its country."""
        name: str = Field(max_length=20)
        country: str = Field(max_length=20)
        population: int = Field(ge=0)

    city = llm.with_structured_output(City, method="function_calling").invoke(
        "Name a big city in France.")
    assert isinstance(city, City) and city.population >= 0


def test_langchain_openai_responses_api_tools(server):
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    weather = tool(get_weather)
    llm = ChatOpenAI(base_url=f"{server.base}/v1", api_key=API_KEY, model="smollm2",
                     temperature=0, max_tokens=60, max_retries=0, use_responses_api=True)
    messages = [HumanMessage(QUESTION)]
    asked = llm.bind_tools([weather], tool_choice="required").invoke(messages)
    assert [c["name"] for c in asked.tool_calls] == ["get_weather"], asked
    result = weather.invoke(asked.tool_calls[0])
    answer = llm.bind_tools([weather]).invoke(messages + [asked, result])
    assert answer.text and not answer.tool_calls


def test_langchain_ollama_bind_tools_agent_loop(server):
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool
    from langchain_ollama import ChatOllama

    weather = tool(get_weather)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    caller = ChatOllama(base_url=server.base, model="smollm2", temperature=0, num_predict=60,
                        format=CALL_SCHEMA, client_kwargs={"headers": headers})
    messages = [HumanMessage(QUESTION)]
    asked = caller.bind_tools([weather]).invoke(messages)
    assert [c["name"] for c in asked.tool_calls] == ["get_weather"], asked
    jsonschema.validate(asked.tool_calls[0]["args"], PARAMS)
    result = weather.invoke(asked.tool_calls[0])
    llm = ChatOllama(base_url=server.base, model="smollm2", temperature=0, num_predict=24,
                     client_kwargs={"headers": headers})
    answer = llm.bind_tools([weather]).invoke(messages + [asked, result])
    assert answer.content and not answer.tool_calls


# --- Embeddings -----------------------------------------------------------

EMBED_TEXTS = ["The cat sits on the mat.", "A kitten is lying on a rug.",
               "Stock markets fell sharply after the announcement."]


@pytest.fixture(scope="module")
def embed_reference(embed_server):
    out = lucid_embed(embed_server, "all-minilm", EMBED_TEXTS)
    return [e["embedding"] for e in out["embeddings"]]


def assert_vectors(got, want, tol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w) == 384
        assert max(abs(a - b) for a, b in zip(g, w)) <= tol


def test_langchain_openai_embeddings(embed_server, embed_reference):
    from langchain_openai import OpenAIEmbeddings

    # `check_embedding_ctx_length=False` sends the texts as they are. Left
    # on (the default), LangChain first tokenizes them with tiktoken's
    # cl100k_base, which tiktoken downloads on first use (no network here),
    # and would send OpenAI's token ids, which mean nothing to another
    # model's vocabulary; LangChain's own docs say to turn it off for
    # OpenAI-compatible servers.
    emb = OpenAIEmbeddings(model="all-minilm", base_url=f"{embed_server.base}/v1",
                           api_key=API_KEY, check_embedding_ctx_length=False, max_retries=0)
    assert_vectors(emb.embed_documents(EMBED_TEXTS), embed_reference)
    assert_vectors([emb.embed_query(EMBED_TEXTS[1])], embed_reference[1:2])


def test_langchain_ollama_embeddings(embed_server, embed_reference):
    from langchain_ollama import OllamaEmbeddings

    emb = OllamaEmbeddings(model="all-minilm", base_url=embed_server.base,
                           client_kwargs={"headers": {"Authorization": f"Bearer {API_KEY}"}})
    assert_vectors(emb.embed_documents(EMBED_TEXTS), embed_reference)
    assert_vectors([emb.embed_query(EMBED_TEXTS[2])], embed_reference[2:])


def test_litellm_embedding(embed_server, embed_reference):
    import litellm

    r = litellm.embedding(model="openai/all-minilm", api_base=f"{embed_server.base}/v1",
                          api_key=API_KEY, input=EMBED_TEXTS)
    assert_vectors([d["embedding"] for d in r.data], embed_reference)
    assert r.usage.prompt_tokens > 0


# --- instructor -----------------------------------------------------------

def test_instructor_tools_mode(server):
    import instructor
    import openai
    from pydantic import BaseModel, Field

    class City(BaseModel):
        name: str = Field(max_length=20)
        country: str = Field(max_length=20)
        population: int = Field(ge=0)
        area_km2: float = Field(gt=0, le=20000)

    client = instructor.from_openai(
        openai.OpenAI(base_url=f"{server.base}/v1", api_key=API_KEY, max_retries=0))
    assert client.mode == instructor.Mode.TOOLS  # instructor's default
    for seed in range(3):
        city = client.chat.completions.create(
            model="smollm2", response_model=City, max_retries=0, max_tokens=100, seed=seed,
            messages=[{"role": "user", "content": "Name a big city in France."}],
        )
        assert isinstance(city, City)
        assert city.population >= 0 and 0 < city.area_km2 <= 20000


# --- llm (Simon Willison's CLI) -------------------------------------------

def test_llm_functions(server, tmp_path):
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: smollm2\n  model_name: smollm2\n  api_base: {server.base}/v1\n"
        "  api_key_name: lucid\n  supports_tools: true\n  supports_schema: true\n")
    (home / "keys.json").write_text(json.dumps({"lucid": API_KEY}))
    env = dict(os.environ, LLM_USER_PATH=str(home))
    llm = Path(sys.executable).parent / "llm"
    functions = ('def get_weather(city: str) -> str:\n'
                 '    "The weather in a city."\n'
                 '    return f"18 degrees and sunny in {city}"\n')
    run = subprocess.run(
        [llm, "-m", "smollm2", "-o", "temperature", "0", "-o", "max_tokens", "60",
         "--functions", functions, "--schema", json.dumps(CALL_SCHEMA), "--td", QUESTION],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    # llm ran the function the model called, and sent its result back.
    # (--td writes the calls to stderr; the answer comes on stdout.)
    assert "Tool call: get_weather(" in run.stderr, run.stderr
    assert run.stdout.strip()
    logs = subprocess.run([llm, "logs", "--json", "-n", "2"], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    responses = json.loads(logs.stdout)
    calls = [c for r in responses for c in (r.get("tool_calls") or [])]
    assert [c["name"] for c in calls] == ["get_weather"], responses
    jsonschema.validate(calls[0]["arguments"], PARAMS)
    results = [t for r in responses for t in (r.get("tool_results") or [])]
    assert results and "18 degrees and sunny" in results[0]["output"]
