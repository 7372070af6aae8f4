"""lucid serve's embedding and reranking routes against the real SDKs:
`client.embeddings.create` of OpenAI's (floats, the base64 it asks for by
default, base64 asked for explicitly, `dimensions`), `ollama.embed` and
`ollama.embeddings`, and `/v1/rerank` over HTTP.

The model is all-MiniLM-L6-v2 (`all-minilm`); every route must give the
vectors `lucid embed all-minilm --json` prints for the same texts. The
reranker is the random-weight cross-encoder fixture
tests/fixtures/encoders/bert-reranker, whose reference.json has
sentence-transformers' logits for its pairs.
"""

import array
import base64
import json
import math

import httpx
import ollama
import openai
import pytest

from conftest import API_KEY, RERANKER_DIR, lucid_embed

TEXTS = [
    "The cat sits on the mat.",
    "A kitten is lying on a rug.",
    "Stock markets fell sharply after the announcement.",
    "Where is the nearest train station?",
]
# Well over all-MiniLM-L6-v2's 256 tokens.
LONG = "Embeddings turn a text into a vector. " * 60
TOL = 1e-6


@pytest.fixture(scope="module")
def reference(embed_server):
    return lucid_embed(embed_server, "all-minilm", TEXTS)


def vectors(ref) -> list[list[float]]:
    return [e["embedding"] for e in ref["embeddings"]]


def assert_same(got, want, tol=TOL):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        worst = max(abs(a - b) for a, b in zip(g, w))
        assert worst <= tol, worst


def f32(vs) -> list[list[float]]:
    """Each number as the float32 it stands for (JSON carries a float32 as its
    shortest decimal, which Python reads as a nearby float64)."""
    return [array.array("f", v).tolist() for v in vs]


def cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def oa(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=API_KEY, max_retries=0)


def ol(server) -> ollama.Client:
    return ollama.Client(host=server.base, headers={"Authorization": f"Bearer {API_KEY}"})


def test_openai_embeddings_are_lucid_embeds_vectors(embed_server, reference):
    client = oa(embed_server)
    want = vectors(reference)
    floats = client.embeddings.create(model="all-minilm", input=TEXTS, encoding_format="float")
    assert floats.object == "list" and floats.model == "all-minilm"
    assert [d.index for d in floats.data] == list(range(len(TEXTS)))
    assert_same([d.embedding for d in floats.data], want)
    assert floats.usage.prompt_tokens == reference["prompt_tokens"]
    assert floats.usage.total_tokens == reference["prompt_tokens"]
    # The SDK's default: it asks for base64 and decodes it itself.
    default = client.embeddings.create(model="all-minilm", input=TEXTS)
    exact = f32(d.embedding for d in floats.data)
    assert [d.embedding for d in default.data] == exact
    # base64 asked for: the little-endian float32 bytes, left to the caller.
    b64 = client.embeddings.create(model="all-minilm", input=TEXTS, encoding_format="base64")
    decoded = [array.array("f", base64.b64decode(d.embedding)).tolist() for d in b64.data]
    assert decoded == exact
    # One text alone, and the vectors' structure: unit length, similar
    # sentences closer than unrelated ones.
    one = client.embeddings.create(model="all-minilm", input=TEXTS[0], encoding_format="float")
    assert_same([one.data[0].embedding], want[:1])
    for v in want:
        assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5
    assert cosine(want[0], want[1]) > cosine(want[0], want[2]) + 0.3


def test_openai_embeddings_dimensions_tokens_and_truncation(embed_server, reference):
    client = oa(embed_server)
    short = client.embeddings.create(model="all-minilm", input=TEXTS[:2], dimensions=64,
                                     encoding_format="float")
    for d, full in zip(short.data, vectors(reference)):
        assert len(d.embedding) == 64
        norm = math.sqrt(sum(x * x for x in full[:64]))
        assert_same([d.embedding], [[x / norm for x in full[:64]]], 1e-5)
    # Token ids, read as given: the ids of a text give its vector.
    ids = httpx.post(f"{embed_server.base}/tokenize",
                     headers={"Authorization": f"Bearer {API_KEY}"},
                     json={"model": "all-minilm", "content": TEXTS[3], "add_special": True})
    tokens = ids.json()["tokens"]
    by_ids = client.embeddings.create(model="all-minilm", input=[tokens], encoding_format="float")
    assert_same([by_ids.data[0].embedding], vectors(reference)[3:])
    # A long text is cut to the model's 256 tokens, and the header says so.
    raw = client.embeddings.with_raw_response.create(model="all-minilm", input=[TEXTS[0], LONG])
    assert raw.headers["x-lucid-truncated"] == "1"
    parsed = raw.parse()
    cut = lucid_embed(embed_server, "all-minilm", [LONG])
    assert parsed.usage.prompt_tokens == reference["embeddings"][0]["tokens"] + 256
    assert cut["embeddings"][0]["truncated"] is True
    assert_same([parsed.data[1].embedding], vectors(cut))
    plain = client.embeddings.with_raw_response.create(model="all-minilm", input=TEXTS)
    assert plain.headers["x-lucid-truncated"] == "0"


def test_openai_embedding_errors(embed_server):
    client = oa(embed_server)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="all-minilm", input="")
    assert e.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="all-minilm", input=["ok", ""])
    assert e.value.body["param"] == "input[1]"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="all-minilm", input="x", dimensions=385)
    assert e.value.body["param"] == "dimensions" and "384" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="all-minilm", input=[list(range(300))])
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    # An embedding model does not generate.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="all-minilm", max_tokens=4,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["param"] == "model"
    assert e.value.body["code"] == "model_not_supported"
    assert "embedding model" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="all-minilm", prompt="Hi", max_tokens=4)
    assert e.value.body["code"] == "model_not_supported"
    # Listed like any other model.
    assert "all-minilm" in [m.id for m in client.models.list().data]


def test_ollama_embed_and_embeddings(embed_server, reference):
    client = ol(embed_server)
    want = vectors(reference)
    r = client.embed(model="all-minilm", input=TEXTS)
    assert r.model == "all-minilm"
    assert_same(r.embeddings, want)
    assert r.prompt_eval_count == reference["prompt_tokens"]
    assert r.total_duration > 0
    one = client.embed(model="all-minilm:latest", input=TEXTS[1], dimensions=32)
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 32
    legacy = client.embeddings(model="all-minilm", prompt=TEXTS[2])
    assert_same([legacy.embedding], want[2:3])
    with pytest.raises(ollama.ResponseError) as e:
        client.embed(model="all-minilm", input=[TEXTS[0], LONG], truncate=False)
    assert e.value.status_code == 400 and "input[1]" in e.value.error
    cut = client.embed(model="all-minilm", input=[LONG])
    assert cut.prompt_eval_count == 256
    show = client.show("all-minilm")
    assert list(show.capabilities) == ["embedding"]
    assert "all-minilm:latest" in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="all-minilm", prompt="Hi")
    assert e.value.status_code == 400 and "embedding model" in e.value.error


def reranker_groups():
    ref = json.loads((RERANKER_DIR / "reference.json").read_text())
    groups: dict[str, list[tuple[str, float, int]]] = {}
    for pair, logit in zip(ref["inputs"], ref["logits"]):
        groups.setdefault(pair["query"], []).append(
            (pair["document"], logit, len(pair["input_ids"])))
    return groups


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
def test_rerank_gives_the_cross_encoders_logits_best_first(embed_server, path):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for query, docs in reranker_groups().items():
        r = httpx.post(f"{embed_server.base}{path}", headers=headers, timeout=60, json={
            "model": "bert-reranker", "query": query, "documents": [d[0] for d in docs],
            "return_documents": True})
        assert r.status_code == 200, r.text
        body = r.json()
        scores = [res["relevance_score"] for res in body["results"]]
        assert scores == sorted(scores, reverse=True)
        for res in body["results"]:
            doc, logit, _ = docs[res["index"]]
            assert abs(res["relevance_score"] - logit) < 1e-5, (query, doc)
            assert res["document"] == {"text": doc}
        assert body["usage"]["prompt_tokens"] == sum(d[2] for d in docs)
    r = httpx.post(f"{embed_server.base}{path}", headers=headers, json={
        "model": "all-minilm", "query": "q", "documents": ["a"]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "model"


def test_metrics_count_embedding_inputs_and_tokens(embed_server):
    client = oa(embed_server)
    client.embeddings.create(model="all-minilm", input=["one", "two", "three"])
    text = embed_server.metrics()

    def value(name):
        for line in text.splitlines():
            if line.startswith(f'{name}{{model="all-minilm",task="embed"}} '):
                return float(line.split()[-1])
        return 0.0

    assert value("lucid_embedding_inputs_total") >= 3
    assert value("lucid_embedding_tokens_total") >= 9
