"""A local HTTP server standing in for the Hugging Face hub and other hosts, for the fetch tests.

Routes are exact paths mapped to a behaviour: ("file", bytes) serves them; ("lfs", bytes,
published) answers 302 with the hub's ``X-Linked-Etag`` header (the sha256 it publishes) and
serves the bytes at the redirect; ("cut", bytes) announces the whole length and sends half;
("slow", seconds) answers nothing for that long; ("status", code) answers that code. Every
other path is a 404, as the hub answers for a removed repository.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHost:
    def __init__(self):
        self.routes: dict[str, tuple] = {}
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                host.requests.append(self.path)
                route = host.routes.get(self.path)
                if self.path.startswith("/cdn/"):
                    route = host.routes.get(self.path.removeprefix("/cdn"))
                    route = ("file", route[1]) if route else None
                if route is None:
                    return self._send(404, b"Repository not found")
                kind = route[0]
                if kind == "file":
                    return self._send(200, route[1])
                if kind == "lfs":
                    published = route[2] or hashlib.sha256(route[1]).hexdigest()
                    self.send_response(302)
                    self.send_header("Location", "/cdn" + self.path)
                    self.send_header("X-Linked-Etag", f'"{published}"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if kind == "cut":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(route[1])))
                    self.end_headers()
                    self.wfile.write(route[1][: len(route[1]) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if kind == "slow":
                    time.sleep(route[1])
                    return self._send(200, b"too late")
                return self._send(route[1], b"refused")

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
