"""A fake OpenAI-compatible chat server on 127.0.0.1 (tests and benchmarks).

It runs in a thread of the calling process and answers each
``POST /chat/completions`` with ``responder(body) -> (status, content)``:
``content`` is the answer text (status 200), or the error body. Every request
body is kept in ``requests``. Loopback only: it never listens elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Responder = Callable[[dict], tuple]


def chat_response(content, finish_reason: str = "stop", model: str = "fake") -> dict:
    return {"id": "fake", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class FakeChatServer:
    def __init__(self, responder: Responder, delay: float = 0.0):
        self.responder = responder
        self.delay = delay
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server.lock:
                    server.requests.append(body)
                    server.paths.append(self.path)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    reply = server.responder(body)
                    status, content = reply[0], reply[1]
                    extra = reply[2] if len(reply) > 2 else {}
                    if status == 200:
                        payload = chat_response(content, extra.get("finish_reason", "stop"), body.get("model", ""))
                    else:
                        payload = {"error": {"message": str(content), "code": status}}
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in extra.get("headers", {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "FakeChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def is_sc_request(body: dict) -> bool:
    """True for VIEScore's SC request (its prompt names the editing instruction)."""
    texts = [p["text"] for p in body["messages"][0]["content"] if p["type"] == "text"]
    return any("Editing instruction:" in t for t in texts)


def images_of(body: dict) -> list[str]:
    return [part["image_url"]["url"] for part in body["messages"][0]["content"] if part["type"] == "image_url"]
