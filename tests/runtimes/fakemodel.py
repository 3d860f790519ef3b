"""A scripted model on 127.0.0.1 that speaks the three streaming APIs the
runtimes use, and keeps every request it was sent.

- Anthropic Messages API (`POST /v1/messages`, SSE when `"stream": true`):
  Claude Code.
- OpenAI Responses API (`POST /v1/responses`, SSE): Codex CLI with
  `wire_api = "responses"`.
- Gemini (`POST /v1beta/models/M:streamGenerateContent?alt=sse`, and
  `:generateContent`): Gemini CLI with GOOGLE_GEMINI_BASE_URL.

The script is a list of shell commands. The server is stateless between
requests: the step is the number of tool results the runtime has already sent
back in the conversation, so retries, side requests (titles, summaries) and
request order do not shift it. A request whose conversation holds N results
gets tool call N+1, or a closing text once the script is done. Requests that
offer no shell tool (side requests) get a short text.

`received()` is the concatenated text of every request body, which is where a
test looks for a secret that must never reach the model.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DONE_TEXT = "All scripted steps are done."


class FakeModel:
    def __init__(self, commands: list[str | dict[str, Any]]) -> None:
        # A step is a command, {"command": …, "shell": …} for Codex's
        # exec_command (whose `shell` argument the model may choose), or
        # {"tool": NAME, "input": {…}} for another tool (a file tool).
        self.commands = list(commands)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.times: list[float] = []  # when each request arrived (time.monotonic)
        # Every attempt to reach another host through the proxy variables the
        # runtimes are given (HTTPS_PROXY/HTTP_PROXY point here): none may happen.
        self.escapes: list[str] = []
        self.lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: object) -> None:  # keep test output quiet
                pass

            def do_CONNECT(self) -> None:
                model._escape(f"CONNECT {self.path}")
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _foreign(self) -> bool:
                if self.path.startswith(("http://", "https://")):
                    model._escape(f"{self.command} {self.path}")
                    self._json(403, {"error": "xguard tests: no traffic may leave 127.0.0.1"})
                    return True
                return False

            def do_GET(self) -> None:  # model lists, health checks
                if self._foreign():
                    return
                model._record(self.path, {})
                self._json(200, {"data": [], "models": []})

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                if self._foreign():
                    return
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                if self.headers.get("Content-Encoding") == "zstd":
                    body: dict[str, Any] = {"_undecoded": len(raw)}
                else:
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = {"_raw": raw.decode("utf-8", "replace")}
                model._record(self.path, body)
                path = self.path.split("?", 1)[0]
                if path.endswith("/messages/count_tokens"):
                    self._json(200, {"input_tokens": 10})
                elif path.endswith("/messages"):
                    model._anthropic(self, body)
                elif path.endswith("/responses"):
                    model._openai(self, body)
                elif ":streamGenerateContent" in path or ":generateContent" in path:
                    model._gemini(self, body, stream=":streamGenerateContent" in path)
                elif ":countTokens" in path:
                    self._json(200, {"totalTokens": 10})
                else:
                    self._json(404, {"error": {"message": f"no such endpoint {path}"}})

            def _json(self, status: int, obj: object) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def sse(self, events: list[tuple[str | None, object]]) -> None:
                out = []
                for name, data in events:
                    if name:
                        out.append(f"event: {name}\n")
                    out.append(f"data: {json.dumps(data)}\n\n")
                payload = "".join(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeModel:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append((path, body))
            self.times.append(time.monotonic())

    def _escape(self, what: str) -> None:
        with self.lock:
            self.escapes.append(what)

    def proxy_env(self) -> dict[str, str]:
        """Proxy variables that send any other host to this server, which refuses it."""
        return {
            k: self.url
            for k in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY")
        } | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def received(self) -> str:
        """Everything the runtime sent, as one text to search."""
        with self.lock:
            return "\n".join(json.dumps(b, ensure_ascii=False) for _, b in self.requests)

    def _step(self, results: int) -> dict[str, Any] | None:
        if results >= len(self.commands):
            return None
        step = self.commands[results]
        return {"command": step} if isinstance(step, str) else step

    def _call(self, results: int, shell: str, tools: set[Any]) -> tuple[str, dict[str, Any]] | None:
        """(tool name, arguments) of the next call, when the runtime offers that tool."""
        step = self._step(results)
        if step is None:
            return None
        if "tool" in step:
            name, args = str(step["tool"]), dict(step["input"])
        else:
            name, args = shell, {"command": step["command"], "description": f"step {results + 1}"}
        return (name, args) if name in tools else None

    # -- Anthropic Messages --------------------------------------------------
    def tool_results_anthropic(self) -> list[str]:
        """The text of every tool_result in the last agent request, in order."""
        return _last(self, "/messages", _anthropic_results)

    def _anthropic(self, h: Any, body: dict[str, Any]) -> None:
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        results = len(_anthropic_results(body))
        call = self._call(results, "Bash", tools)
        if call is not None:
            block = {
                "type": "tool_use",
                "id": f"toolu_{results + 1:04d}",
                "name": call[0],
                "input": {},
            }
            args = call[1]
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            stop = "end_turn"
        msg = {
            "id": f"msg_{len(self.requests):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        }
        if not body.get("stream"):
            full = (
                dict(block, input=args) if call is not None else {"type": "text", "text": DONE_TEXT}
            )
            h._json(200, dict(msg, content=[full], stop_reason=stop))
            return
        delta = (
            {"type": "input_json_delta", "partial_json": json.dumps(args)}
            if call is not None
            else {"type": "text_delta", "text": DONE_TEXT}
        )
        h.sse(
            [
                ("message_start", {"type": "message_start", "message": msg}),
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": block},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": 5},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        )

    # -- OpenAI Responses ----------------------------------------------------
    def tool_results_openai(self) -> list[str]:
        return _last(self, "/responses", _openai_results)

    def _openai(self, h: Any, body: dict[str, Any]) -> None:
        tools = {
            t.get("name") for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")
        }
        results = len(_openai_results(body))
        step = self._step(results) if tools else None
        cmd = step["command"] if step else None
        rid = f"resp_{len(self.requests):04d}"
        if step is not None and cmd is not None:
            if "exec_command" in tools:
                name, args = "exec_command", {"cmd": cmd}
                if "shell" in step:
                    args["shell"] = step["shell"]
            elif "shell_command" in tools:
                name, args = "shell_command", {"command": cmd}
            else:
                name, args = "shell", {"command": ["bash", "-lc", cmd]}
            item: dict[str, Any] = {
                "type": "function_call",
                "id": f"fc_{results + 1:04d}",
                "call_id": f"call_{results + 1:04d}",
                "name": name,
                "arguments": json.dumps(args),
                "status": "completed",
            }
        else:
            item = {
                "type": "message",
                "id": f"msg_{len(self.requests):04d}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": DONE_TEXT, "annotations": []}],
            }
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        }
        h.sse(
            [
                (
                    "response.created",
                    {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
                ),
                (
                    "response.output_item.done",
                    {"type": "response.output_item.done", "output_index": 0, "item": item},
                ),
                (
                    "response.completed",
                    {
                        "type": "response.completed",
                        "response": {
                            "id": rid,
                            "status": "completed",
                            "output": [item],
                            "usage": usage,
                        },
                    },
                ),
            ]
        )

    # -- Gemini ----------------------------------------------------------------
    def tool_results_gemini(self) -> list[str]:
        return _last(self, "GenerateContent", _gemini_results)

    def _gemini(self, h: Any, body: dict[str, Any], stream: bool) -> None:
        names = {
            f.get("name")
            for t in body.get("tools") or []
            if isinstance(t, dict)
            for f in t.get("functionDeclarations") or []
            if isinstance(f, dict)
        }
        results = len(_gemini_results(body))
        call = self._call(results, "run_shell_command", names)
        if call is not None:
            part: dict[str, Any] = {"functionCall": {"name": call[0], "args": call[1]}}
        elif names:
            part = {"text": DONE_TEXT}
        else:  # side requests (routing, next-speaker checks) want JSON text
            part = {
                "text": '{"reasoning": "done", "next_speaker": "user", "model_choice": "flash"}'
            }
        chunk = {
            "candidates": [
                {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 5,
                "totalTokenCount": 15,
            },
            "modelVersion": "gemini-2.5-flash",
        }
        if stream:
            h.sse([(None, chunk)])
        else:
            h._json(200, chunk)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text(c) for c in content)
    if isinstance(content, dict):
        for k in ("text", "output", "content"):
            if k in content:
                return _text(content[k])
    return json.dumps(content) if content is not None else ""


def _anthropic_results(body: dict[str, Any]) -> list[str]:
    out = []
    for m in body.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), list):
            for c in m["content"]:
                if isinstance(c, dict) and c.get("type") == "tool_result":
                    out.append(_text(c.get("content")))
    return out


def _openai_results(body: dict[str, Any]) -> list[str]:
    out = []
    for it in body.get("input") or []:
        if isinstance(it, dict) and it.get("type") in (
            "function_call_output",
            "custom_tool_call_output",
        ):
            out.append(_text(it.get("output")))
    return out


def _gemini_results(body: dict[str, Any]) -> list[str]:
    out = []
    for c in body.get("contents") or []:
        for p in (c.get("parts") or []) if isinstance(c, dict) else []:
            if isinstance(p, dict) and "functionResponse" in p:
                out.append(json.dumps(p["functionResponse"].get("response"), ensure_ascii=False))
    return out


def _last(model: FakeModel, marker: str, extract: Any) -> list[str]:
    """Tool results in the longest agent request that hit an endpoint (the last turn)."""
    best: list[str] = []
    with model.lock:
        for path, body in model.requests:
            if marker in path:
                r = extract(body)
                if len(r) >= len(best):
                    best = r
    return best
