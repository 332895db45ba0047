"""End-to-end check with the official Anthropic and OpenAI Python SDKs against the real
`gateway` binary in front of a mock OpenAI-format upstream (served by this script on a loopback
port), so that tool calls, image input and upstream errors can be driven and what the upstream
received can be checked.

The Anthropic SDK talks to `/v1/messages` (plain, streamed, tools, images, count_tokens,
errors); the OpenAI SDK to `/v1/chat/completions` (tools, images, upstream errors). Usage:
python3 tests/sdk/upstream_sdks.py path/to/gateway
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "sk-gateway-sdk-check"
UPSTREAM_KEY = "sk-upstream-secret"
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

RECEIVED = []


def completion(content=None, tool_calls=None, finish="stop"):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-sdk1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27},
    }


def chunk(delta, finish=None, usage=None):
    c = {
        "id": "chatcmpl-sdk1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        c["usage"] = usage
    return "data: " + json.dumps(c) + "\n\n"


TOOL_CALL = {
    "id": "call_w1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


class Upstream(BaseHTTPRequestHandler):
    """Answers like an OpenAI-compatible provider; what the last user turn says picks the answer."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        RECEIVED.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
        last = body["messages"][-1]
        text = last.get("content") if isinstance(last.get("content"), str) else json.dumps(last.get("content"))
        if "rate limit me" in (text or ""):
            return self.send(429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                             "param": None, "code": "rate_limit_exceeded"}})
        if body.get("tools") and last["role"] == "user":
            if body.get("stream"):
                frames = [
                    chunk({"role": "assistant", "content": None,
                           "tool_calls": [{"index": 0, "id": "call_w1", "type": "function",
                                           "function": {"name": "get_weather", "arguments": ""}}]}),
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
                    chunk({}, "tool_calls"),
                ]
                return self.stream(frames, body)
            return self.send(200, completion(None, [TOOL_CALL], "tool_calls"))
        reply = "I see an image." if "image_url" in (text or "") else "Hello from upstream"
        if body.get("stream"):
            frames = [chunk({"role": "assistant", "content": ""})]
            frames += [chunk({"content": piece}) for piece in ["Hello ", "from ", "upstream"]]
            frames.append(chunk({}, "stop"))
            return self.stream(frames, body)
        return self.send(200, completion(reply))

    def send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, frames, body):
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(chunk(None, usage={"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27}))
        frames.append("data: [DONE]\n\n")
        data = "".join(frames).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


CONFIG = """
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{upstream}/v1"
api_key_env = "SDK_UPSTREAM_KEY"

[[models]]
name = "claude-sonnet-4-5"
deployments = [{{ provider = "up", model = "upstream-model" }}]

[[projects]]
name = "sdk"
keys = ["sha256:{key_hash}"]
"""


def start(binary, upstream, workdir):
    path = os.path.join(workdir, "gateway.toml")
    with open(path, "w") as f:
        f.write(CONFIG.format(upstream=upstream, key_hash=hashlib.sha256(KEY.encode()).hexdigest()))
    env = dict(os.environ, SDK_UPSTREAM_KEY=UPSTREAM_KEY, RUST_LOG="info")
    proc = subprocess.Popen(
        [binary, "--log-format", "json", "serve", "--config", path],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    timer = threading.Timer(30, proc.kill)
    timer.start()
    logs = []
    for line in proc.stderr:
        logs.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "listen" in record:
            timer.cancel()
            threading.Thread(target=lambda: logs.extend(proc.stderr), daemon=True).start()
            return proc, record["listen"], logs
    raise SystemExit("gateway did not start")


PASSED = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    PASSED.append(what)
    print("ok:", what)


def anthropic_checks(base):
    c = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0)
    m = c.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, system="Be brief.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    check(m.type == "message" and m.content[0].text == "Hello from upstream", "anthropic: message")
    check(m.stop_reason == "end_turn" and m.usage.input_tokens == 21 and m.usage.output_tokens == 6,
          "anthropic: stop reason and usage")
    sent = RECEIVED[-1]
    check(sent["body"]["messages"][0] == {"role": "system", "content": "Be brief."}, "anthropic: system sent upstream")
    check(sent["auth"] == f"Bearer {UPSTREAM_KEY}", "anthropic: upstream got the provider key, not the client's")

    with c.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Stream hello"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    check(text == "Hello from upstream", "anthropic: streamed text")
    check(final.stop_reason == "end_turn" and final.usage.output_tokens == 6, "anthropic: final streamed message")

    tools = [{"name": "get_weather", "description": "Weather now",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    m = c.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, tools=tools,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    use = [b for b in m.content if b.type == "tool_use"]
    check(m.stop_reason == "tool_use" and use and use[0].name == "get_weather" and use[0].input == {"city": "Paris"},
          "anthropic: tool_use block")
    check(RECEIVED[-1]["body"]["tools"][0]["function"]["name"] == "get_weather", "anthropic: tools sent upstream")

    with c.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, tools=tools,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as s:
        final = s.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"]
    check(use and use[0].input == {"city": "Paris"}, "anthropic: streamed tool input assembled by the SDK")

    m = c.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, tools=tools,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": use[0].id, "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0].id, "content": "22C, sunny"}]},
        ],
    )
    sent = RECEIVED[-1]["body"]["messages"]
    check(sent[-1] == {"role": "tool", "tool_call_id": use[0].id, "content": "22C, sunny"},
          "anthropic: tool_result sent upstream as a tool message")

    m = c.messages.create(
        model="claude-sonnet-4-5", max_tokens=64,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
            {"type": "text", "text": "What is this?"}]}],
    )
    part = RECEIVED[-1]["body"]["messages"][-1]["content"][0]
    check(part == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
          "anthropic: image sent upstream as a data URL")
    check(m.content[0].text == "I see an image.", "anthropic: image answer")

    n = c.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x" * 400}])
    check(100 <= n.input_tokens <= 120, "anthropic: count_tokens")

    try:
        anthropic.Anthropic(base_url=base, api_key="wrong", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        check(False, "anthropic: bad key refused")
    except anthropic.AuthenticationError as ex:
        check(ex.status_code == 401 and ex.body["error"]["type"] == "authentication_error",
              "anthropic: bad key -> AuthenticationError")
    try:
        c.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        check(False, "anthropic: unknown model refused")
    except anthropic.NotFoundError as ex:
        check(ex.body["error"]["type"] == "not_found_error", "anthropic: unknown model -> NotFoundError")
    try:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "rate limit me"}])
        check(False, "anthropic: upstream 429 surfaced")
    except anthropic.RateLimitError as ex:
        check(ex.body["error"]["type"] == "rate_limit_error", "anthropic: upstream 429 -> RateLimitError")


def openai_checks(base):
    c = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = c.chat.completions.create(
        model="claude-sonnet-4-5", tools=tools, messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = r.choices[0].message.tool_calls[0]
    check(r.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"},
          "openai: tool call")
    s = c.chat.completions.create(
        model="claude-sonnet-4-5", tools=tools, stream=True, messages=[{"role": "user", "content": "Weather?"}])
    args = "".join(
        (ch.choices[0].delta.tool_calls or [None])[0].function.arguments or ""
        for ch in s if ch.choices and ch.choices[0].delta.tool_calls)
    check(json.loads(args) == {"city": "Paris"}, "openai: streamed tool call arguments")
    r = c.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}])
    check(RECEIVED[-1]["body"]["messages"][0]["content"][1]["image_url"]["url"].endswith(PIXEL),
          "openai: image part reaches the upstream intact")
    check(r.choices[0].message.content == "I see an image.", "openai: image answer")
    try:
        c.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "rate limit me"}])
        check(False, "openai: upstream 429 surfaced")
    except openai.RateLimitError as ex:
        check(ex.status_code == 429, "openai: upstream 429 -> RateLimitError")


def main(binary):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as workdir:
        proc, addr, logs = start(binary, upstream, workdir)
        try:
            base = f"http://{addr}"
            anthropic_checks(base)
            openai_checks(base)
        finally:
            proc.terminate()
            code = proc.wait(timeout=30)
            server.shutdown()
    check(code == 0, "gateway exits 0 on SIGTERM")
    text = "".join(logs)
    check(KEY not in text and UPSTREAM_KEY not in text and "Weather in Paris" not in text,
          "no key and no prompt text in the gateway's logs")
    print(f"sdk: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "gateway"))
