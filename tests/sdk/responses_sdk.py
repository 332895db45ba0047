"""End-to-end check of the Responses endpoint (and legacy completions) with the official OpenAI
Python SDK against the real `gateway` binary, in front of a mock upstream served by this script
on a loopback port that speaks both the OpenAI wire format (`/v1/chat/completions`,
`/v1/completions`) and Anthropic's (`/v1/messages`). Every Responses check runs once per
backend format: plain, streamed, a function tool round trip, image input, and the 400 for
`previous_response_id`. Usage: python3 tests/sdk/responses_sdk.py path/to/gateway
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "sk-gateway-responses-check"
UPSTREAM_KEY = "sk-upstream-secret"
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
USAGE = {"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27}

RECEIVED = []


def sse(frames, named=False):
    out = []
    for f in frames:
        if named:
            out.append(f"event: {f['type']}\ndata: {json.dumps(f)}\n\n")
        else:
            out.append("data: " + (f if isinstance(f, str) else json.dumps(f)) + "\n\n")
    return "".join(out).encode()


def oai_chunk(delta, finish=None, usage=None):
    return {"id": "chatcmpl-sdk1", "object": "chat.completion.chunk", "created": 1, "model": "upstream-model",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
            **({"usage": usage} if usage else {})}


def wants_tool(messages):
    return messages[-1]["role"] == "user"


def last_text(messages):
    return json.dumps(messages[-1].get("content"))


class Upstream(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        RECEIVED.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body})
        if self.path == "/v1/completions":
            return self.send(200, {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "upstream-model",
                                   "choices": [{"text": " world", "index": 0, "logprobs": None, "finish_reason": "stop"}],
                                   "usage": USAGE})
        if self.path == "/v1/messages":
            return self.anthropic(body)
        return self.openai(body)

    def openai(self, body):
        msgs = body["messages"]
        tool = bool(body.get("tools")) and wants_tool(msgs)
        reply = "I see an image." if "image_url" in last_text(msgs) else "Hello from upstream"
        if body.get("stream"):
            if tool:
                frames = [oai_chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_w1", "type": "function",
                                                                         "function": {"name": "get_weather", "arguments": ""}}]}),
                          oai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
                          oai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
                          oai_chunk({}, "tool_calls")]
            else:
                frames = [oai_chunk({"role": "assistant", "content": ""})]
                frames += [oai_chunk({"content": p}) for p in ["Hello ", "from ", "upstream"]]
                frames.append(oai_chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                frames.append(oai_chunk(None, usage=USAGE))
            frames.append("[DONE]")
            return self.raw(sse(frames), "text/event-stream")
        message = {"role": "assistant", "content": None if tool else reply}
        if tool:
            message["tool_calls"] = [{"id": "call_w1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
        return self.send(200, {"id": "chatcmpl-sdk1", "object": "chat.completion", "created": 1, "model": "upstream-model",
                               "choices": [{"index": 0, "message": message,
                                            "finish_reason": "tool_calls" if tool else "stop"}],
                               "usage": USAGE})

    def anthropic(self, body):
        msgs = body["messages"]
        last = msgs[-1]
        tool = bool(body.get("tools")) and not any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in (last["content"] if isinstance(last["content"], list) else []))
        reply = "I see an image." if '"image"' in json.dumps(last["content"]) else "Hello from upstream"
        usage = {"input_tokens": 21, "output_tokens": 6}
        if body.get("stream"):
            frames = [{"type": "message_start", "message": {"id": "msg_sdk1", "type": "message", "role": "assistant",
                                                            "model": "claude-upstream", "content": [], "stop_reason": None,
                                                            "stop_sequence": None, "usage": {"input_tokens": 21, "output_tokens": 1}}}]
            if tool:
                frames += [{"type": "content_block_start", "index": 0,
                            "content_block": {"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {}}},
                           {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
                           {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
                           {"type": "content_block_stop", "index": 0}]
            else:
                frames += [{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
                frames += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
                           for p in ["Hello ", "from ", "upstream"]]
                frames.append({"type": "content_block_stop", "index": 0})
            frames += [{"type": "message_delta", "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 6}},
                       {"type": "message_stop"}]
            return self.raw(sse(frames, named=True), "text/event-stream")
        content = ([{"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {"city": "Paris"}}]
                   if tool else [{"type": "text", "text": reply}])
        return self.send(200, {"id": "msg_sdk1", "type": "message", "role": "assistant", "model": "claude-upstream",
                               "content": content, "stop_reason": "tool_use" if tool else "end_turn",
                               "stop_sequence": None, "usage": usage})

    def send(self, status, obj):
        self.raw(json.dumps(obj).encode(), "application/json", status)

    def raw(self, data, content_type, status=200):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


CONFIG = """
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[providers]]
name = "oai"
kind = "openai"
base_url = "http://{upstream}/v1"
api_key_env = "SDK_UPSTREAM_KEY"

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{upstream}"
api_key_env = "SDK_UPSTREAM_KEY"

[[models]]
name = "gpt-sdk"
deployments = [{{ provider = "oai", model = "upstream-model" }}]

[[models]]
name = "claude-sdk"
deployments = [{{ provider = "claude", model = "claude-upstream" }}]

[[projects]]
name = "sdk"
keys = ["sha256:{key_hash}"]
"""


def start(binary, upstream, workdir):
    path = os.path.join(workdir, "gateway.toml")
    with open(path, "w") as f:
        f.write(CONFIG.format(upstream=upstream, key_hash=hashlib.sha256(KEY.encode()).hexdigest()))
    env = dict(os.environ, SDK_UPSTREAM_KEY=UPSTREAM_KEY, RUST_LOG="info")
    proc = subprocess.Popen([binary, "--log-format", "json", "serve", "--config", path],
                            stderr=subprocess.PIPE, text=True, env=env)
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


TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather now",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def responses_checks(c, model, fmt):
    r = c.responses.create(model=model, instructions="Be brief.", input="Say hello", max_output_tokens=64)
    check(r.status == "completed" and r.output_text == "Hello from upstream", f"{fmt}: response text")
    check(r.usage.input_tokens == 21 and r.usage.output_tokens == 6, f"{fmt}: response usage")
    sent = RECEIVED[-1]
    h = sent["headers"]
    check(h.get("authorization") == f"Bearer {UPSTREAM_KEY}" or h.get("x-api-key") == UPSTREAM_KEY,
          f"{fmt}: upstream got the provider key, not the client's")

    with c.responses.stream(model=model, input="Stream hello") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    check("".join(deltas) == "Hello from upstream", f"{fmt}: streamed text deltas")
    check(final.status == "completed" and final.output_text == "Hello from upstream" and final.usage.output_tokens == 6,
          f"{fmt}: final streamed response with usage")

    r = c.responses.create(model=model, input="Weather in Paris?", tools=TOOLS)
    calls = [o for o in r.output if o.type == "function_call"]
    check(calls and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"},
          f"{fmt}: function call")
    with c.responses.stream(model=model, input="Weather in Paris?", tools=TOOLS) as s:
        arg_deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
        final = s.get_final_response()
    streamed = [o for o in final.output if o.type == "function_call"]
    check(json.loads("".join(arg_deltas)) == {"city": "Paris"} and streamed
          and json.loads(streamed[0].arguments) == {"city": "Paris"}, f"{fmt}: streamed function call arguments")

    follow = [{"role": "user", "content": "Weather in Paris?"}] + [o.model_dump(exclude_none=True) for o in r.output]
    follow.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "22C, sunny"})
    r2 = c.responses.create(model=model, input=follow, tools=TOOLS)
    check(r2.output_text == "Hello from upstream", f"{fmt}: answer after the function output")
    msgs = RECEIVED[-1]["body"]["messages"]
    if fmt == "openai":
        check(msgs[-1] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "22C, sunny"},
              f"{fmt}: function output sent upstream as a tool message")
    else:
        check(msgs[-1]["content"][0]["type"] == "tool_result" and msgs[-1]["content"][0]["tool_use_id"] == calls[0].call_id,
              f"{fmt}: function output sent upstream as a tool_result")

    r = c.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}"}]}])
    sent = json.dumps(RECEIVED[-1]["body"])
    check(PIXEL in sent and r.output_text == "I see an image.", f"{fmt}: image input")

    try:
        c.responses.create(model=model, input="more", previous_response_id="resp_abc")
        check(False, f"{fmt}: previous_response_id refused")
    except openai.BadRequestError as ex:
        check(ex.status_code == 400 and "no conversation state" in ex.message, f"{fmt}: previous_response_id -> 400")


def main(binary):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as workdir:
        proc, addr, logs = start(binary, upstream, workdir)
        try:
            c = openai.OpenAI(base_url=f"http://{addr}/v1", api_key=KEY, max_retries=0)
            responses_checks(c, "gpt-sdk", "openai")
            responses_checks(c, "claude-sdk", "anthropic")
            r = c.completions.create(model="gpt-sdk", prompt="Hello", max_tokens=5)
            check(r.choices[0].text == " world" and RECEIVED[-1]["path"] == "/v1/completions"
                  and RECEIVED[-1]["body"]["model"] == "upstream-model", "legacy completions passed through")
            try:
                c.completions.create(model="claude-sdk", prompt="Hello")
                check(False, "legacy completions refused for an Anthropic model")
            except openai.BadRequestError as ex:
                check(ex.status_code == 400, "legacy completions on an Anthropic model -> 400")
        finally:
            proc.terminate()
            code = proc.wait(timeout=30)
            server.shutdown()
    check(code == 0, "gateway exits 0 on SIGTERM")
    text = "".join(logs)
    check(KEY not in text and UPSTREAM_KEY not in text and "Weather in Paris" not in text,
          "no key and no prompt text in the gateway's logs")
    print(f"sdk responses: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "gateway"))
