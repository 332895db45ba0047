"""End-to-end check with the official OpenAI Python SDK against the real `gateway` binary.

Starts `gateway serve` with the repository's gateway.toml (built-in mock provider) on ephemeral
loopback ports, then drives chat (plain, streamed, streamed with usage), embeddings (the SDK's
default base64 encoding and floats), model listing and error mapping through the SDK, sync and
async. Usage: python3 tests/sdk/openai_sdk.py path/to/gateway
"""

import asyncio
import json
import os
import subprocess
import sys
import threading

import openai
from openai import AsyncOpenAI, OpenAI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "sk-gateway-demo"


def start(binary):
    env = dict(os.environ)
    env.update(
        GATEWAY_SERVER__LISTEN="127.0.0.1:0",
        GATEWAY_SERVER__ADMIN_LISTEN="127.0.0.1:0",
        RUST_LOG="info",
    )
    proc = subprocess.Popen(
        [binary, "--log-format", "json", "serve", "--config", os.path.join(ROOT, "gateway.toml")],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    timer = threading.Timer(30, proc.kill)
    timer.start()
    for line in proc.stderr:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "listen" in record:
            timer.cancel()
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, record["listen"]
    raise SystemExit("gateway did not start")


PASSED = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    PASSED.append(what)
    print("ok:", what)


def main(binary):
    proc, addr = start(binary)
    try:
        base = f"http://{addr}/v1"
        c = OpenAI(base_url=base, api_key=KEY, max_retries=0)

        r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello SDK"}])
        check(r.choices[0].message.content == "Hello SDK", "chat completion echoes")
        check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0, "chat usage")

        s = c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Streaming hello"}], stream=True
        )
        chunks = list(s)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        check(text == "Streaming hello", "streamed text")
        check(all(ch.usage is None for ch in chunks), "no usage chunk unless asked")

        s = c.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "usage please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        last = list(s)[-1]
        check(last.usage is not None and last.usage.total_tokens > 0 and last.choices == [], "stream usage chunk")

        e = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        check(len(e.data) == 2 and len(e.data[0].embedding) == 1536, "embeddings (base64 on the wire)")
        e2 = c.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float", dimensions=16)
        check(len(e2.data[0].embedding) == 16, "embeddings as floats with dimensions")

        ids = [m.id for m in c.models.list()]
        check(ids == ["gpt-4o-mini", "text-embedding-3-small"], "model list")
        check(c.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini", "model retrieve")

        try:
            OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
            check(False, "bad key refused")
        except openai.AuthenticationError as ex:
            check(ex.status_code == 401 and ex.body["code"] == "invalid_api_key", "bad key -> AuthenticationError")
        try:
            c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
            check(False, "unknown model refused")
        except openai.NotFoundError as ex:
            check(ex.body["code"] == "model_not_found", "unknown model -> NotFoundError")

        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
        check(raw.headers.get("x-request-id", "").startswith("req_"), "x-request-id header")
        check(raw.headers.get("x-gateway-provider") == "mock", "x-gateway-provider header")

        async def run_async():
            ac = AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0)
            s = await ac.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "async stream"}], stream=True
            )
            out = ""
            async for ch in s:
                if ch.choices:
                    out += ch.choices[0].delta.content or ""
            await ac.close()
            return out

        check(asyncio.run(run_async()) == "async stream", "async streaming client")
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    check(code == 0, "gateway exits 0 on SIGTERM")
    print(f"sdk: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "gateway"))
