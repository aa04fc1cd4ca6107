"""An OpenAI-compatible chat server around a local model: ``bi-ide council serve-model``.

``POST /v1/chat/completions`` (model, messages, max_tokens; greedy) and ``GET /v1/models``, so the
council's openai backend — or any OpenAI client — can use a model on this machine or on a GPU box.
Requests that arrive together are answered in one batched ``generate`` call: a collector thread
takes every request waiting (up to the batch size) and runs them as one batch.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bi_ide.council.backends import LocalModelBackend

MAX_BODY = 1 << 20
MAX_TOKENS = 1024
WAIT_S = 0.02  # how long the collector waits for more requests to join a batch


class ModelServer:
    """The HTTP server and its batching collector; ``start()`` serves on a daemon thread."""

    def __init__(self, backend: LocalModelBackend, host: str = "127.0.0.1", port: int = 8080,
                 model_name: str = "local"):
        self.backend = backend
        self.model_name = model_name
        self.pending: queue.Queue = queue.Queue()
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ModelServer:
        for target, name in ((self.httpd.serve_forever, "bi-ide-model-http"), (self._collect, "bi-ide-model-batch")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def wait(self) -> None:
        """Block until the server stops."""
        for t in self._threads:
            t.join()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self._threads:
            t.join(timeout=10)

    def complete(self, messages: list[dict], max_tokens: int) -> str:
        """Queue one chat and wait for its reply (batched with whatever else is waiting)."""
        done: Future = Future()
        self.pending.put((messages, max_tokens, done))
        return done.result()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self.pending.get(timeout=0.2)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + WAIT_S
            while len(batch) < self.backend.batch_size and time.monotonic() < deadline:
                try:
                    batch.append(self.pending.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                prompts = [self.backend.prompt(m) for m, _, _ in batch]
                replies = self.backend.generate(prompts, max(t for _, t, _ in batch))
            except Exception as e:  # noqa: BLE001 - every waiting request gets the error, the server lives on
                for *_, done in batch:
                    done.set_exception(e)
                continue
            for (_, _, done), reply in zip(batch, replies, strict=True):
                done.set_result(reply)


def _handler(server: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: one line per request is noise for a batch of 40 members
            return

        def _send(self, status: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
            return self._error(404, f"no route {self.path}; try POST /v1/chat/completions")

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(404, f"no route {self.path}; try POST /v1/chat/completions")
            size = int(self.headers.get("Content-Length") or 0)
            if size > MAX_BODY:
                return self._error(413, f"the body is over {MAX_BODY} bytes")
            try:
                body = json.loads(self.rfile.read(size) or b"{}")
                chat = body["messages"]
                if not isinstance(chat, list) or not all(isinstance(m, dict) and "content" in m for m in chat):
                    raise ValueError("messages must be a list of {role, content}")
                max_tokens = int(body.get("max_tokens") or 128)
                if not 1 <= max_tokens <= MAX_TOKENS:
                    raise ValueError(f"max_tokens must be 1..{MAX_TOKENS}")
            except (ValueError, KeyError, TypeError) as e:
                return self._error(400, f"bad request: {e}")
            try:
                text = server.complete(chat, max_tokens)
            except Exception as e:  # noqa: BLE001 - the model failed: say so to the client
                return self._error(500, f"the model failed: {e}")
            return self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": server.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            })

    return Handler
