"""Aggregate decode throughput of `lucid serve` with 1, 4 and 16 concurrent
streams (a benchmark, not a test: pytest does not collect it).

    LUCID_BIN=target/release/lucid .cache/clients-venv/bin/python tests/clients/bench_throughput.py

With `--llama-server BIN` the same clients measure llama.cpp's server
instead (`BIN -m SmolLM2 -t 2 -np 16 -c 16384`, the same 1024 tokens of
context per sequence), for the side-by-side figure in BENCHMARKS.md.

Each client streams one greedy chat completion of up to 64 tokens; the
rate is all clients' completion tokens over the wall time of the round.
"""

import concurrent.futures
import subprocess
import sys
import time
import urllib.request

import openai

from conftest import API_KEY, MODEL_FILE, Server


class LlamaServer:
    """llama.cpp's llama-server on a fixed loopback port."""

    def __init__(self, binary: str, port: int = 18089):
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [binary, "-m", str(MODEL_FILE), "-t", "2", "-tb", "2", "-np", "16", "-c", "16384",
             "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.proc.kill()
        sys.exit("llama-server did not become healthy")

    def stop(self):
        self.proc.kill()
        self.proc.wait()

PROMPTS = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a bicycle works.",
    "Describe your favourite city at length.",
    "Write a long poem about the sea.",
]


def one(base: str, i: int, max_tokens: int) -> int:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        max_tokens=max_tokens, temperature=0, stream=True, stream_options={"include_usage": True},
    )
    used = 0
    for chunk in stream:
        if chunk.usage:
            used = chunk.usage.completion_tokens
    return used


def main() -> None:
    # The suite's server runs on two threads, as llama.cpp was measured.
    if len(sys.argv) == 3 and sys.argv[1] == "--llama-server":
        server = LlamaServer(sys.argv[2])
    else:
        server = Server("--max-sequences", "16", "--max-queue", "64")
    try:
        one(server.base, 0, 8)  # warm up
        for n in (1, 4, 16):
            t = time.time()
            with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
                tokens = sum(pool.map(lambda i: one(server.base, i, 64), range(n)))
            dt = time.time() - t
            print(f"{n:2d} streams: {tokens:4d} tokens in {dt:5.2f}s = {tokens / dt:6.1f} tok/s aggregate", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
