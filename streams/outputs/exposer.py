"""The metrics process: answers ``/metrics`` for a worker, in an interpreter of its own.

Started by :class:`streams.outputs.scrape.MetricsProcess` as
``python -I exposer.py --fd N``; it imports nothing but the standard library (and
not this package), so it starts in a few tens of milliseconds and holds a few MB.

Why a process: a thread of the worker shares the worker's interpreter, and the
cycle collector holds that interpreter for its whole walk (0.2-0.4 s a few times in
a 60-day backfill); no thread answers while it runs. This process does not share it.

How it talks to the worker:

- the listening socket is the worker's (bound there, so a taken port fails the
  worker's start with the setting's name), inherited as ``--fd``;
- stdin carries the exposition text in frames: the text's length and the number
  of asks the worker had read when it formatted it (8 bytes each, big-endian),
  then the text. The latest frame is what a scrape gets; none is served before the
  first. End of stdin (the worker stopped, or was killed) ends this process;
- each scrape writes one byte ``?`` to stdout (an ask) and waits up to
  ``--wait-ms`` for a frame formatted after the worker read it; then it answers
  with the text it has (at most one refresh interval old), so a worker busy in its
  collector delays an answer by that much at most;
- a text older than ``--stale-s`` is not served: the answer is 503, so Prometheus
  marks the worker down (``up`` 0, the ``KpiWorkerDown`` alert) as it did when a
  thread of a stuck worker could not answer at all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Latest:
    """The last text the worker sent, and a way to wait for one sent after an ask."""

    def __init__(self, ask_fd: int) -> None:
        self.ask_fd = ask_fd
        self.text = b""
        self.asked = 0  # asks written to the worker
        self.answered = 0  # asks the worker had read when it formatted ``text``
        self.at = time.monotonic()  # when ``text`` came
        self.changed = threading.Condition()

    def put(self, answered: int, text: bytes) -> None:
        with self.changed:
            self.text, self.answered, self.at = text, answered, time.monotonic()
            self.changed.notify_all()

    def fresh(self, wait_s: float) -> tuple[bytes, float]:
        """Ask the worker for a newer text; the newer one if it comes within ``wait_s``,
        else the one there is; with its age in seconds."""
        with self.changed:
            self.asked += 1
            mine = self.asked
            # (full: the worker has not read the last 64 KiB of asks; it has some waiting)
            with contextlib.suppress(BlockingIOError):
                os.write(self.ask_fd, b"?")
            self.changed.wait_for(lambda: self.answered >= mine, wait_s)
            return self.text, time.monotonic() - self.at


def frame(answered: int, text: bytes) -> bytes:
    """What the worker writes: the text with its header."""
    return len(text).to_bytes(8, "big") + answered.to_bytes(8, "big") + text


def _read_exact(fd: int, n: int) -> bytes | None:
    parts: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> tuple[int, bytes] | None:
    """One frame from the worker: (asks it had read, text); None once it is gone."""
    head = _read_exact(fd, 16)
    if head is None:
        return None
    text = _read_exact(fd, int.from_bytes(head[:8], "big"))
    return None if text is None else (int.from_bytes(head[8:], "big"), text)


def handler(latest: Latest, wait_s: float, stale_s: float, content_type: str) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                body, status, ctype = b"only /metrics here\n", 404, "text/plain"
            else:
                body, age = latest.fresh(wait_s)
                status, ctype = 200, content_type
                if age > stale_s:
                    body = (f"the worker has sent no metrics for {age:.0f} s (stuck, or "
                            "its interpreter held)\n").encode()
                    status, ctype = 503, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every 15 s is not news

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--fd", type=int, required=True, help="the listening socket's fd")
    p.add_argument("--wait-ms", type=float, default=50.0,
                   help="how long a scrape waits for a fresh text (default 50)")
    p.add_argument("--stale-s", type=float, default=30.0,
                   help="a text older than this is answered with 503 (default 30)")
    p.add_argument("--content-type", default="text/plain; version=0.0.4; charset=utf-8")
    args = p.parse_args()
    # Ctrl-C reaches the terminal's whole process group: the worker stops, and this
    # process ends when the worker's end of stdin closes (no traceback of its own)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_blocking(1, False)
    latest = Latest(ask_fd=1)
    first = read_frame(0)  # (a scrape before it would get an empty text)
    if first is None:
        return 0
    latest.put(*first)
    server = _Server(("127.0.0.1", 0), handler(latest, args.wait_ms / 1000, args.stale_s,
                                                args.content_type),
                     bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=args.fd)
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    while (got := read_frame(0)) is not None:
        latest.put(*got)
    return 0  # the worker is gone


if __name__ == "__main__":
    raise SystemExit(main())
