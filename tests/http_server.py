"""A real HTTP server on 127.0.0.1 for the download tests: byte ranges, errors, cut-off transfers and redirects."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves `files` (path -> bytes). `cut[path] = n`: the next n GETs of path stop half-way (the connection is
    closed after half the bytes, with the full Content-Length announced); `status[path] = code`: answer that code;
    `redirect[path] = other`: 302 to another path of this server or a URL. Every request is logged (path, headers)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.redirect: dict[str, str] = {}
        self.log: list[tuple[str, str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.log.append(("GET", self.path, dict(self.headers)))
                if self.path in server.status:
                    self.send_error(server.status[self.path])
                    return
                if self.path in server.redirect:
                    self.send_response(302)
                    target = server.redirect[self.path]  # a path of this server, or a whole URL elsewhere
                    self.send_header("Location", target if target.startswith("http") else f"http://{self.headers['Host']}{target}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged:
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                payload = body[start:]
                if server.cut.get(self.path, 0) > 0:
                    server.cut[self.path] -= 1
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path: str) -> list[dict]:
        return [headers for method, p, headers in self.log if p == path]
