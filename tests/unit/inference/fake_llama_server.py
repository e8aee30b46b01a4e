"""A stand-in for the llama.cpp child: serves /health and /v1/chat/completions on 127.0.0.1.

Usage: ``python fake_llama_server.py PORT MODE`` where MODE is ``ok``, ``exit-now`` (fails to load),
``unhealthy`` (answers 503 forever), ``crash-soon`` (exits 0.8 s after starting to serve) or
``ignore-term`` (healthy, ignores SIGTERM). Like the real child it exits when stdin closes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, MODE = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if MODE == "unhealthy" else 200
        self._send(status, {"status": "ok" if status == 200 else "loading"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        message = {"role": "assistant", "content": json.dumps(body)}
        self._send(200, {"choices": [{"message": message, "finish_reason": "stop"}], "usage": {}})

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def crash_soon() -> None:
    time.sleep(0.8)
    os._exit(1)


def watch_stdin() -> None:
    while sys.stdin.buffer.read(1024):
        pass
    os._exit(0)


if __name__ == "__main__":
    print(f"fake: starting in mode {MODE}", file=sys.stderr, flush=True)
    if MODE == "exit-now":
        print("fake: error loading model: bad magic", file=sys.stderr, flush=True)
        sys.exit(3)
    if MODE == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=watch_stdin, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    if MODE == "crash-soon":
        threading.Thread(target=crash_soon, daemon=True).start()
    server.serve_forever()
