"""A stand-in for the Anthropic Messages API, so the real Claude Code in the real agent image can
run a turn with no internet: the first turn asks for one ``Read`` of :data:`READ_PATH`, the turn
with its result answers :data:`ANSWER` and ends; a non-streaming request (the title) gets a short
text. Every request's path is kept in :attr:`FakeModel.requests`. It listens on the engine's
bridge address (where containers reach ``host.docker.internal``), never anywhere else.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_PATH = "/etc/hostname"
ANSWER = "Read it. Done."


def _sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _turn(model: str, blocks: list[bytes], stop: str) -> bytes:
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1200, "output_tokens": 1}}
    return b"".join([_sse("message_start", {"type": "message_start", "message": message}), *blocks,
                     _sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": 40},
                                            "delta": {"stop_reason": stop, "stop_sequence": None}}),
                     _sse("message_stop", {"type": "message_stop"})])


def _block(index: int, start: dict, delta: dict) -> list[bytes]:
    return [_sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
            _sse("content_block_stop", {"type": "content_block_stop", "index": index})]


def reply_to(request: dict) -> tuple[str, bytes]:
    """(content type, body) for one Messages API request."""
    model = str(request.get("model", "claude-fake"))
    if not request.get("stream"):
        return "application/json", json.dumps({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "stop_sequence": None,
            "content": [{"type": "text", "text": "A fake turn"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 3}}).encode()
    last = (request.get("messages") or [{}])[-1].get("content")
    answered = isinstance(last, list) and any(isinstance(c, dict) and c.get("type") == "tool_result" for c in last)
    if answered:
        blocks = _block(0, {"type": "text", "text": ""}, {"type": "text_delta", "text": ANSWER})
        return "text/event-stream", _turn(model, blocks, "end_turn")
    blocks = _block(0, {"type": "tool_use", "id": "toolu_fake", "name": "Read", "input": {}},
                    {"type": "input_json_delta", "partial_json": json.dumps({"file_path": READ_PATH})})
    return "text/event-stream", _turn(model, blocks, "tool_use")


class FakeModel:
    """See the module docstring; ``with FakeModel(host) as model: model.url``."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.requests.append(self.path)
                if not self.path.startswith("/v1/messages"):
                    return self._send(404, "text/plain", b"not found\n")
                try:
                    kind, out = reply_to(json.loads(body))
                except ValueError:
                    return self._send(400, "text/plain", b"not JSON\n")
                self._send(200, kind, out)

            def _send(self, status: int, kind: str, out: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://host.docker.internal:{self.port}"  # as the agent's container reaches it

    def __enter__(self) -> FakeModel:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
