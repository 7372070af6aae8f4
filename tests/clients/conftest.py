"""Starts `lucid serve` on an ephemeral loopback port for the client tests.

The binary comes from $LUCID_BIN (run.sh builds it); the model is SmolLM2
from .cache/models (scripts/fetch-test-models.sh), served as `smollm2`
through the catalog's local source, exactly as a user's `--model smollm2`.
The embedding tests' server (`embed_server`) serves all-MiniLM-L6-v2 the
same way, as `all-minilm`, and the random-weight cross-encoder fixture
tests/fixtures/encoders/bert-reranker by its path (answering to
`bert-reranker`).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / ".cache" / "models"
MODEL_FILE = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_DIR = MODELS / "all-MiniLM-L6-v2"
RERANKER_DIR = ROOT / "tests" / "fixtures" / "encoders" / "bert-reranker"
API_KEY = "test-key"


class Server:
    """A running `lucid serve`: its base URL, process and output."""

    def __init__(self, *extra_args: str, models: tuple[str, ...] = ("smollm2",)):
        if "smollm2" in models and not MODEL_FILE.is_file():
            pytest.fail(f"{MODEL_FILE} is missing: run scripts/fetch-test-models.sh")
        if "all-minilm" in models and not (MINILM_DIR / "model.safetensors").is_file():
            pytest.fail(f"{MINILM_DIR} is missing: run scripts/fetch-test-models.sh")
        binary = os.environ.get("LUCID_BIN") or shutil.which("lucid")
        if not binary:
            pytest.fail("set LUCID_BIN to the lucid binary (run.sh does)")
        self.home = tempfile.mkdtemp(prefix="lucid-clients-")
        env = dict(os.environ)
        env.update(
            LUCID_HOME=self.home,
            LUCID_LOCAL_MODELS=str(MODELS),
            LUCID_LOG="info",
            # No vendor keys leak into the test server.
            OPENAI_API_KEY="",
            ANTHROPIC_API_KEY="",
            GEMINI_API_KEY="",
            XDG_CONFIG_HOME=self.home,
        )
        self.env = env
        self.binary = binary
        model_args = [arg for m in models for arg in ("--model", m)]
        args = [
            binary, "serve", *model_args, "--port", "0", "--api-key", API_KEY,
            "--threads", "2", "--ctx-size", "1024", *extra_args,
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.log: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        try:
            line = self.proc.stdout.readline()
            m = re.search(r"http://(\S+)", line)
            if not m:
                pytest.fail(f"lucid serve did not start: {line!r} {''.join(self.log)}")
            self.base = f"http://{m.group(1)}"
            self.wait_healthy()
        except BaseException:
            # A server that never came up leaves neither a process nor its
            # copy of the model behind.
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.home, ignore_errors=True)
            raise

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_healthy(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail("lucid serve never became healthy")

    def metrics(self) -> str:
        return httpx.get(
            f"{self.base}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ).text

    def gauge(self, name: str) -> float:
        m = re.search(rf'^{name}{{model="smollm2"}} (\S+)$', self.metrics(), re.M)
        return float(m.group(1)) if m else float("nan")

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)
        return self.proc.returncode


def lucid_embed(server: Server, model: str, texts: list[str]) -> dict:
    """What `lucid embed MODEL --json TEXTS` prints, with the server's
    store and models: the vectors every embedding route must give."""
    out = subprocess.run(
        [server.binary, "embed", model, "--json", "--threads", "2", *texts],
        env=server.env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="session")
def server():
    s = Server("--max-sequences", "8", "--max-queue", "64")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def embed_server():
    """A server of embedding models: all-MiniLM-L6-v2 and the reranker fixture."""
    s = Server(models=("all-minilm", str(RERANKER_DIR)))
    yield s
    s.stop()


@pytest.fixture
def make_server():
    started = []

    def make(*args, **kw):
        s = Server(*args, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
