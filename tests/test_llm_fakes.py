"""A scripted OpenAI-compatible chat endpoint on loopback: a fake of an external paid API.

It speaks real HTTP, so the real ``OpenAIClient`` (and everything above it) runs unchanged. Each
request gets a ``Reply``: from a script (one per request, the last one repeats) or from a
function of the request body. No tests live here; other test modules import the fixture tools.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = "ok"  # the chat message content of a 200 answer
    raw: bytes | None = None  # sent as is instead of a chat completion
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def chat_body(content: str) -> bytes:
    return json.dumps(
        {
            "id": "fake",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
    ).encode()


def user_text(payload: dict[str, object]) -> str:
    messages = payload.get("messages")
    assert isinstance(messages, list)
    return "\n".join(str(m["content"]) for m in messages if m.get("role") == "user")


Responder = Callable[[dict[str, object]], Reply]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    payload: dict[str, object]
    at: float


class FakeOpenAI:
    def __init__(self, script: Sequence[Reply] | Responder) -> None:
        self.script = script
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _reply_for(self, index: int, payload: dict[str, object]) -> Reply:
        if callable(self.script):
            return self.script(payload)
        return self.script[min(index, len(self.script) - 1)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    index = len(fake.requests)
                    fake.requests.append(
                        Recorded(self.path, dict(self.headers), payload, time.monotonic())
                    )
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    reply = fake._reply_for(index, payload)
                    time.sleep(reply.delay_s)
                    body = reply.raw if reply.raw is not None else chat_body(reply.content or "")
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) before the answer
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

        return Handler

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def fake_openai(script: Sequence[Reply] | Responder) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(script) as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
