"""The live view's HTTP side: a threaded server whose handler answers the page, status JSON, Server-Sent
Events, per source MJPEG streams and snapshots, metrics and the health check, from what `serve.LiveView`
keeps. Each viewer is served on its own thread.
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from socketserver import TCPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import CatmoodError
from .serve_cameras import BOUNDARY, Camera

if TYPE_CHECKING:
    from .serve import LiveView

INITIAL = b'<script id="initial" type="application/json">null</script>'  # in live.html: the status goes there
# On every answer: no type sniffing, no framing by other pages, nothing fetched from elsewhere (the page is
# self-contained: inline style and script, its own streams and status), no referrer (URLs may hold the token).
HARDENING = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
             "Content-Security-Policy": "default-src 'none'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
                                        "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
                                        "form-action 'none'; frame-ancestors 'none'"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, view: LiveView):
        self.view, self.open = view, set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # HTTPServer's would look up the host's DNS name: slow on a box offline
        self.server_name, self.server_port = self.server_address[:2]

    def process_request_thread(self, request, client_address) -> None:
        self.open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.open.discard(request)

    def close_connections(self) -> None:
        """Unblock viewer threads stuck writing to clients that stopped reading."""
        for request in list(self.open):
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server6(_Server):
    address_family = socket.AF_INET6


def bind(host: str, port: int, view: LiveView) -> _Server:
    try:
        return (_Server6 if ":" in host else _Server)((host, port), view)
    except OSError as exc:
        raise CatmoodError(f"--serve {host}:{port}: cannot listen there ({exc.strerror or exc})") from None


def page(status: bytes) -> bytes:
    """The page with the status now inside it. JSON's `<`, `>`, `&` only occur in its strings, where their
    \\u escapes mean the same: so no text of a source can end the script element."""
    html = resources.files(__package__).joinpath("live.html").read_bytes()
    safe = status.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")
    return html.replace(INITIAL, INITIAL.replace(b">null<", b">" + safe + b"<"), 1)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 60  # a viewer that stops reading for this long is let go
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "catmood"  # the Server header names no Python version

    def log_message(self, format, *args) -> None:
        pass  # request lines can carry the token; the run's own output stays readable

    def end_headers(self) -> None:
        for name, value in HARDENING.items():
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self) -> None:
        view, route = self.server.view, urlsplit(self.path).path
        if not view.answers_to(self.headers.get("Host")):
            return self._send(421, b"this server does not answer to that host name (see --serve-host)\n",
                              "text/plain")
        if route == "/healthz":
            return self._send(*view.health(), "text/plain")
        if not view.authorised(self.path, self.headers.get("Authorization")):
            return self._send(401, b"a valid token is needed: ?token=... or Authorization: Bearer ...\n",
                              "text/plain", {"WWW-Authenticate": 'Bearer realm="catmood"'})
        try:
            self._route(view, route)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True  # the viewer went away

    def _route(self, view: LiveView, route: str) -> None:
        if route in ("/", "/index.html"):
            self._send(200, page(view.build_status()), "text/html; charset=utf-8")
        elif route == "/status.json":
            self._send(200, view.build_status(), "application/json")
        elif route == "/metrics":
            self._send(200, generate_latest(view.registry), CONTENT_TYPE_LATEST)
        elif route == "/events":
            self._events(view)
        elif route in ("/snapshot.jpg", "/stream.mjpg"):
            self._picture(view, route)
        else:
            self._send(404, b"not found\n", "text/plain")

    def _picture(self, view: LiveView, route: str) -> None:
        """/snapshot.jpg and /stream.mjpg of `?source=NAME`, or of the first source without it."""
        try:
            camera = view.camera(parse_qs(urlsplit(self.path).query).get("source", [None])[0])
        except KeyError:  # the name is not echoed: nothing a viewer typed comes back to the page
            return self._send(404, b"no source of that name; /status.json lists them\n", "text/plain")
        jpeg = camera.encoded(view.period) if camera is not None else None
        if camera is None or (route == "/snapshot.jpg" and jpeg is None):
            self._send(503, b"no frame yet\n", "text/plain", {"Retry-After": "1"})
        elif route == "/snapshot.jpg":
            self._send(200, jpeg, "image/jpeg")
        else:
            self._stream(view, camera)

    def _send(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(code)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)),
                            "Cache-Control": "no-store", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _open_stream(self, content_type: str) -> None:
        self.close_connection = True  # a stream ends with the connection
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()

    def _stream(self, view: LiveView, camera: Camera) -> None:
        self._open_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        with view.ready:
            camera.viewers += 1
        try:
            tick, sent = -1, None
            while view.running:
                tick = view.wait(tick)
                part = camera.encoded(view.period, part=True)
                if part is not None and part is not sent:
                    self.wfile.write(part)
                    sent = part
        finally:
            with view.ready:
                camera.viewers -= 1

    def _events(self, view: LiveView) -> None:
        """Server-Sent Events: the status after each tick, a comment every 15 s to keep proxies open."""
        self._open_stream("text/event-stream")
        tick = -1
        while True:
            new = view.wait(tick)
            self.wfile.write(b"data: " + view.status + b"\n\n" if new != tick else b": idle\n\n")
            tick = new
            if not view.running:
                return
