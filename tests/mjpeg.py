"""A stand-in IP camera for tests: a real MJPEG-over-HTTP server on 127.0.0.1 that OpenCV reads.

    with MjpegCamera(frames=lambda i: image, fps=15) as camera:
        capture = cv2.VideoCapture(camera.url)          # http://127.0.0.1:PORT/video.mjpg
        ...
        camera.drop(1.0, size=(320, 240))   # every open connection closed now; new ones reset for 1 s;
                                            # then frames are served at 320x240
        camera.stall(3.0)                   # connections stay open, nothing is sent for 3 s
        camera.served, camera.connections

Each client gets its own thread and its own pacing: its first frame at once, then one every 1/fps s.
Every part is `--frame\\r\\nContent-Type: image/jpeg\\r\\nContent-Length: N\\r\\n\\r\\n<jpeg>\\r\\n` in a
`multipart/x-mixed-replace; boundary=frame` response (HTTP/1.0, the body ends when the connection closes).

Modes: "steady" serves frames; "silent" accepts the TCP connection and never sends a byte (a camera that
never answers); "closed" has nothing listening (a port that was bound, then closed: connections are
refused). `max_frames` ends the stream after that many frames in all: open connections are closed after
the last one and new ones are reset. `auth=("user", "pw")` asks for HTTP basic auth (401 without it).
"""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time
from typing import Callable, Sequence

import cv2
import numpy as np

BOUNDARY = "frame"
MODES = ("steady", "silent", "closed")


def pattern(i: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """A BGR test picture (w, h): smooth colour ramps, a block that moves with i, and the number i."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    image = np.empty((h, w, 3), np.uint8)
    image[..., 0] = x.astype(np.uint8)
    image[..., 1] = y.astype(np.uint8)
    image[..., 2] = ((x + y) / 2).astype(np.uint8)
    side = max(4, min(w, h) // 4)
    left = (i * 7) % max(1, w - side)
    cv2.rectangle(image, (left, h // 2 - side // 2), (left + side, h // 2 + side // 2), (255, 255, 255), -1)
    cv2.putText(image, str(i), (4, max(12, h // 5)), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, h / 300), (0, 0, 0), 1)
    return image


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST), not an orderly FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class MjpegCamera:
    """An MJPEG camera on 127.0.0.1 (free port). See the module docstring.

    frames: a callable i -> BGR uint8 image, a list of images (cycled) or one image; None: `pattern(i)`.
        `i` counts the frames sent on the connection (0 first) with index="connection" (the default), or
        the frame periods since start() with index="clock" (every client sees the same frame at once).
    fps: frames per second, per connection.  mode: "steady", "silent" or "closed" (see module docstring).
    size: (w, h) to resize every frame to (cv2.resize), or None for the frames' own size.
    max_frames: end the stream after this many frames served in all (None: never).
    auth: (user, password) for HTTP basic auth, or None.  path: the stream's path ("/video.mjpg").
    quality: JPEG quality.
    """

    def __init__(self, frames: Callable[[int], np.ndarray] | Sequence[np.ndarray] | np.ndarray | None = None,
                 fps: float = 15.0, mode: str = "steady", *, size: tuple[int, int] | None = None,
                 max_frames: int | None = None, auth: tuple[str, str] | None = None,
                 path: str = "/video.mjpg", quality: int = 90, index: str = "connection"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if index not in ("connection", "clock"):
            raise ValueError(f"index must be 'connection' or 'clock', not {index!r}")
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self._frames = frames
        self.fps = float(fps)
        self._mode = mode
        self.size = tuple(size) if size else None
        self.max_frames = max_frames
        self.auth = auth
        self.path = path
        self.quality = int(quality)
        self.index = index

        self.host = "127.0.0.1"
        self.port: int | None = None
        self._listener: socket.socket | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._started_at = 0.0
        self._drop_until = 0.0
        self._stall_until = 0.0
        self._generation = 0           # bumped by drop(): handlers of an older generation hang up
        self._ended = False            # max_frames reached
        self._reserved = 0             # frames handed to writers (served + being written)
        self._open: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._jpeg_cache: dict[tuple, bytes] = {}

        self.served = 0                # JPEG parts written to clients, in all
        self.served_per_connection: list[int] = []   # by connection number (0 first); 0 for refused ones
        self.connections = 0           # TCP connections accepted (refused/reset ones included)
        self.requests: list[dict] = []  # per HTTP request: {"connection", "method", "path", "headers"}
        self.refused = 0               # connections reset (dropped window, ended stream) or answered 401/404

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("start() the camera first")
        return f"http://{self.host}:{self.port}{self.path}"

    def url_with(self, user: str, password: str) -> str:
        """The URL with credentials in it (http://user:pw@127.0.0.1:PORT/video.mjpg)."""
        return self.url.replace("http://", f"http://{user}:{password}@", 1)

    def start(self) -> "MjpegCamera":
        if self.port is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        self.port = listener.getsockname()[1]
        self._started_at = time.monotonic()
        if self._mode == "closed":
            listener.close()         # nothing listens there now: connections are refused
            return self
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, name=f"mjpeg accept :{self.port}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._hang_up_all()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    close = stop

    def __enter__(self) -> "MjpegCamera":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- faults

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        """Set "steady" or "silent" while running (new connections get it); "closed" only before start()."""
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {value!r}")
        if value == "closed" and self.port is not None:
            raise ValueError('mode "closed" is set before start()')
        with self._cond:
            self._mode = value
            self._cond.notify_all()

    def drop(self, seconds: float, size: tuple[int, int] | None = None) -> None:
        """Close every open connection now and reset new ones for `seconds`; then serve again, at `size`
        (w, h) if given."""
        with self._cond:
            self._drop_until = time.monotonic() + seconds
            self._generation += 1
            if size is not None:
                self.size = tuple(size)
            self._hang_up_all()
            self._cond.notify_all()

    def stall(self, seconds: float) -> None:
        """Keep connections open but send nothing for `seconds` (a wedged stream); then resume at fps."""
        with self._cond:
            self._stall_until = time.monotonic() + seconds
            self._cond.notify_all()

    @property
    def dropped(self) -> bool:
        return time.monotonic() < self._drop_until

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def open_connections(self) -> int:
        with self._cond:
            return len(self._open)

    def wait_served(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least n frames were served in all; False on timeout."""
        return self._wait(lambda: self.served >= n, timeout)

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        return self._wait(lambda: self.connections >= n, timeout)

    def _wait(self, predicate, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # ---------------------------------------------------------------- frames

    def frame(self, i: int) -> np.ndarray:
        """The BGR image for frame i, at the size served now (what a client should decode, before JPEG)."""
        frames = self._frames
        if frames is None:
            image = pattern(i, self.size or (160, 120))
        elif callable(frames):
            image = frames(i)
        elif isinstance(frames, np.ndarray):
            image = frames
        else:
            image = frames[i % len(frames)]
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"frames must be BGR uint8 (h, w, 3), got {image.dtype} {image.shape}")
        size = self.size
        if size is not None and (image.shape[1], image.shape[0]) != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return image

    def _jpeg(self, i: int) -> bytes:
        """Frame i as JPEG; a list's or array's frames are encoded once per size, a callable's every time."""
        frames = self._frames
        key = None
        if isinstance(frames, np.ndarray):
            key = (0, self.size)
        elif frames is not None and not callable(frames):
            key = (i % len(frames), self.size)
        data = self._jpeg_cache.get(key) if key else None
        if data is None:
            ok, buf = cv2.imencode(".jpg", self.frame(i), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise RuntimeError("cv2.imencode failed")
            data = buf.tobytes()
            if key:
                if len(self._jpeg_cache) > 256:
                    self._jpeg_cache.clear()
                self._jpeg_cache[key] = data
        return data

    # ---------------------------------------------------------------- server

    def _hang_up_all(self) -> None:
        """(Under the lock.) Wake every handler blocked on its socket; each closes its own."""
        for sock in self._open.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                number = self.connections
                self.connections += 1
                self.served_per_connection.append(0)
                refuse = self._stop or self._ended or time.monotonic() < self._drop_until
                if refuse:
                    self.refused += 1
                else:
                    self._open[number] = conn
                self._cond.notify_all()
            if refuse:
                _reset(conn)
                continue
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True,
                                      name=f"mjpeg :{self.port} #{number}")
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        generation = self._generation
        reset = False
        try:
            if self._mode == "silent":
                self._hold_silently(conn, generation)
                return
            conn.settimeout(5.0)
            request = self._read_request(conn)
            if request is None:
                return
            method, path, headers = request
            with self._cond:
                self.requests.append(dict(connection=number, method=method, path=path, headers=headers))
            if self.auth is not None and not self._authorised(headers):
                self._respond(conn, "401 Unauthorized", 'WWW-Authenticate: Basic realm="camera"\r\n')
                return
            if path.split("?")[0] != self.path:
                self._respond(conn, "404 Not Found")
                return
            conn.settimeout(30.0)
            conn.sendall(("HTTP/1.0 200 OK\r\n"
                          f"Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n"
                          "Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\n"
                          "Connection: close\r\n\r\n").encode())
            reset = self._stream(conn, number, generation)
        except OSError:
            pass
        finally:
            with self._cond:
                self._open.pop(number, None)
                self._cond.notify_all()
            if reset:
                _reset(conn)
            else:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()

    def _stream(self, conn: socket.socket, number: int, generation: int) -> bool:
        """Write parts at fps until the client leaves, a drop, stop or max_frames. True: hang up with RST."""
        period = 1.0 / self.fps
        sent = 0
        next_due = time.monotonic()
        while True:
            with self._cond:
                while True:
                    if self._stop or self._generation != generation:
                        return self._generation != generation
                    now = time.monotonic()
                    if now < self._stall_until:
                        self._cond.wait(self._stall_until - now)
                        next_due = max(next_due, self._stall_until)   # resume at fps, no burst
                        continue
                    if now < next_due:
                        self._cond.wait(next_due - now)
                        continue
                    break
                if self.max_frames is not None and self._reserved >= self.max_frames:
                    self._ended = True
                    self._hang_up_all()
                    self._cond.notify_all()
                    return False
                self._reserved += 1
            i = sent if self.index == "connection" else int((time.monotonic() - self._started_at) * self.fps)
            jpeg = self._jpeg(i)
            conn.sendall((f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                          ).encode() + jpeg + b"\r\n")
            sent += 1
            with self._cond:
                self.served += 1
                self.served_per_connection[number] += 1
                if self.max_frames is not None and self.served >= self.max_frames:
                    self._ended = True
                    self._hang_up_all()     # every stream ends after the last frame (this one included)
                self._cond.notify_all()
            next_due = max(next_due + period, time.monotonic() - period)   # a slow client: no burst to catch up

    def _hold_silently(self, conn: socket.socket, generation: int) -> None:
        """Accept, read whatever comes, never answer; until the client leaves, a drop or stop."""
        conn.settimeout(0.05)
        while not self._stop and self._generation == generation:
            try:
                if not conn.recv(4096):
                    return
            except socket.timeout:
                continue

    def _read_request(self, conn: socket.socket):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
            if len(data) > 65536:
                return None
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) < 2:
            return None
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return parts[0], parts[1], headers

    def _authorised(self, headers: dict) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token.strip()).decode("utf-8").partition(":")
        except ValueError:
            return False
        return (user, password) == tuple(self.auth)

    def _respond(self, conn: socket.socket, status: str, extra: str = "") -> None:
        with self._cond:
            self.refused += 1
        body = status.encode()
        conn.sendall((f"HTTP/1.0 {status}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                      "Connection: close\r\n\r\n").encode() + body)
