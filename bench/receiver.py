"""A minimal keep-alive HTTP receiver for benchmarks: answers 204 to every POST, counts them.

Run as its own process (`python bench/receiver.py PORT`) so it does not share the sender's GIL.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent connects


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
