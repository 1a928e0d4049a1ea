"""Real local HTTP servers for the tests of remote input: files with Range requests, and a STAC API.

:class:`AssetServer` serves a folder over HTTP/1.1 the way object stores serve Cloud-Optimized
GeoTIFFs: ``HEAD``, ``GET`` and single ``Range: bytes=a-b`` requests (206 with ``Content-Range``).
It can demand a header (``Authorization: Bearer <token>``; 401 without it) or a signed URL (a
``sig=<signature>`` query parameter, as Azure SAS tokens are; 403 without it), and inject faults:
a share of requests answered ``503 Service Unavailable`` and a share whose connection is reset
before any answer (a TCP RST, as a dropped connection reads to a client), drawn from a seeded
generator so that a run's faults are random but repeatable; paths listed in ``broken`` answer
503 to every byte-range request (their header reads still work), which no retry gets past.
Given an ``upstream`` STAC API, requests for anything that is not a file of the folder are passed
on to it (token and faults alike), so one server stands in front of the catalog and the assets.

:class:`StacApi` runs ``rustac serve`` (the ``rustac`` package's command line, an in-memory
backend) over ItemCollection files: a real STAC API with item search and paging. Adding items
means serving more files: :meth:`StacApi.serve` restarts it on the same port.
"""

from __future__ import annotations

import collections
import http.server
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    payload: bytes | None = None

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        owner = self.server.owner
        if self.path.startswith("/_control/"):
            return owner.control(self)
        owner.record(self)
        length = int(self.headers.get("Content-Length") or 0)  # read it all: the connection may serve more
        self.payload = self.rfile.read(length) if length else None
        if owner.token is not None and self.headers.get("Authorization") != f"Bearer {owner.token}":
            owner.count("unauthorised")
            return self._plain(401, b"missing or wrong token\n", body)
        fault = owner.fault(self.path, ranged="Range" in self.headers)
        if fault == "drop":
            # a reset, not a clean close: SO_LINGER 0 sends RST, as a broken link or a proxy does
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.rfile.close()
            self.connection.close()
            return None
        if fault == "503":
            return self._plain(503, b"service unavailable, try again\n", body)
        path = owner.root / self.path.split("?", 1)[0].lstrip("/")
        if not path.resolve().is_relative_to(owner.root.resolve()) or not path.is_file():
            if owner.upstream:
                return self._proxy()
            return self._plain(404, b"not found\n", body)
        if owner.signature is not None and f"sig={owner.signature}" not in self.path.partition("?")[2].split("&"):
            owner.count("unsigned")
            return self._plain(403, b"the URL is not signed\n", body)
        data = path.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        if "Range" in self.headers:
            first, _, last = self.headers["Range"].removeprefix("bytes=").partition("-")
            start = int(first) if first else max(0, len(data) - int(last))
            end = min(int(last), len(data) - 1) if first and last else len(data) - 1
            if start >= len(data):
                return self._plain(416, b"", body, {"Content-Range": f"bytes */{len(data)}"})
            status = 206
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start : end + 1])
        return None

    def _proxy(self) -> None:
        owner = self.server.owner
        url = owner.upstream.rstrip("/") + self.path
        request = urllib.request.Request(url, data=self.payload, method=self.command,
                                         headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status, text, kind = reply.status, reply.read(), reply.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as err:
            status, text, kind = err.code, err.read(), err.headers.get("Content-Type", "application/json")
        self._plain(status, text, True, {"Content-Type": kind})

    def _plain(self, status: int, text: bytes, body: bool, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "text/plain", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: _State

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's signature
        """Quiet about connections the client or a dropped answer closed; loud about anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _State:
    """What one server process knows: its settings, its counts and the headers it was sent."""

    def __init__(self, root: Path, token: str | None, fail_share: float, drop_share: float, seed: int,
                 upstream: str | None, signature: str | None = None) -> None:
        self.root, self.token, self.upstream, self.signature = root, token, upstream, signature
        self.fail_share, self.drop_share = fail_share, drop_share
        self.broken: set[str] = set()
        self.counts: collections.Counter = collections.Counter()
        self.headers_seen: list[dict[str, str]] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def record(self, handler: _Handler) -> None:
        with self._lock:
            self.counts["requests"] += 1
            self.headers_seen.append(dict(handler.headers))

    def fault(self, path: str, ranged: bool) -> str | None:
        """None, "503" or "drop" for one request to ``path``."""
        if ranged and path.split("?", 1)[0] in self.broken:
            self.count("broken")
            return "503"
        with self._lock:
            draw = self._random.random()
        if draw < self.fail_share:
            self.count("503")
            return "503"
        if draw < self.fail_share + self.drop_share:
            self.count("drop")
            return "drop"
        return None

    def control(self, handler: _Handler) -> None:
        """``GET /_control/state``: counts and headers seen; ``POST /_control/broken``: the broken paths."""
        if handler.command == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            self.broken = set(json.loads(handler.rfile.read(length) or b"[]"))
        with self._lock:
            state = {"counts": dict(self.counts), "headers": self.headers_seen, "broken": sorted(self.broken)}
        handler._plain(200, json.dumps(state).encode(), True, {"Content-Type": "application/json"})


class AssetServer:
    """A folder served over HTTP on 127.0.0.1 by a process of its own (see the module docstring).

    Its own process, not a thread: GDAL holds Python's lock while it reads, so a server thread in the
    reading process would stall until GDAL's time-out. A context manager; the token travels to the
    process in its environment, never on a command line.
    """

    def __init__(self, root: str | os.PathLike, token: str | None = None, fail_share: float = 0.0,
                 drop_share: float = 0.0, seed: int = 0, upstream: str | None = None, port: int = 0,
                 signature: str | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = [sys.executable, __file__, str(root), str(self.port), str(fail_share), str(drop_share),
                         str(seed), upstream or ""]
        self._env = {**os.environ, "ASSET_SERVER_TOKEN": token or "", "ASSET_SERVER_SIGNATURE": signature or ""}
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> AssetServer:
        self._process = _start(self._command, env=self._env)
        _wait_for(self.url + "/_control/state", self._process)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self._process)

    def state(self) -> dict:
        """Counts (requests, 503, drop, broken, unauthorised) and every request's headers, so far."""
        with urllib.request.urlopen(self.url + "/_control/state", timeout=10) as reply:
            return json.load(reply)

    @property
    def counts(self) -> dict[str, int]:
        return self.state()["counts"]

    def break_paths(self, *paths: str) -> None:
        """Answer 503 to every byte-range request of these URL paths (``/data/x/B04.tif``) from now on."""
        request = urllib.request.Request(self.url + "/_control/broken", data=json.dumps(paths).encode(),
                                         method="POST")
        urllib.request.urlopen(request, timeout=10).close()


def _start(command: list[str], env: dict | None = None) -> subprocess.Popen:
    """A server process whose messages go to a temporary file (a pipe nobody reads would fill and block it)."""
    messages = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=messages, text=True)
    process.messages = messages  # type: ignore[attr-defined]
    return process


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            process.messages.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"{' '.join(process.args)} stopped: {process.messages.read()}")  # type: ignore
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                json.load(reply)
            return
        except (OSError, ValueError):
            time.sleep(0.1)
    _stop(process)
    raise RuntimeError(f"no answer at {url} within {seconds:g} s")


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rustac() -> str:
    """The ``rustac`` command of this Python environment."""
    found = shutil.which("rustac", path=str(Path(sys.executable).parent)) or shutil.which("rustac")
    if found is None:
        raise FileNotFoundError("rustac is not installed (pip install rustac; it is in the test extra)")
    return found


class StacApi:
    """``rustac serve`` over ItemCollection files, on a fixed port; links name ``public_url`` when given
    (the address of a proxy in front of it). A context manager; :meth:`serve` (re)starts it."""

    def __init__(self, port: int | None = None, public_url: str | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.public_url = public_url or self.url
        self._process: subprocess.Popen | None = None

    def serve(self, *item_collections: str | os.PathLike) -> StacApi:
        """Serve exactly the items of these files (the collections they name are created)."""
        self.stop()
        command = [rustac(), "serve", "--create-collections", "--addr", self.public_url,
                   "--bind", f"127.0.0.1:{self.port}", *map(str, item_collections)]
        self._process = _start(command)
        _wait_for(self.url + "/", self._process)
        return self

    def stop(self) -> None:
        _stop(self._process)
        self._process = None

    def __enter__(self) -> StacApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> None:
    """``python http_servers.py ROOT PORT FAIL_SHARE DROP_SHARE SEED [UPSTREAM]`` (token: $ASSET_SERVER_TOKEN,
    the signature file requests must carry as ``?sig=``: $ASSET_SERVER_SIGNATURE)."""
    root, port, fail, drop, seed, upstream = (*argv, "")[:6]
    state = _State(Path(root), os.environ.get("ASSET_SERVER_TOKEN") or None, float(fail), float(drop), int(seed),
                   upstream or None, os.environ.get("ASSET_SERVER_SIGNATURE") or None)
    server = _Server(("127.0.0.1", int(port)), _Handler)
    server.owner = state
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
