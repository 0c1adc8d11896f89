"""An emulated network (raw TCP, port-9100 style) receipt printer on 127.0.0.1.

It records each job's bytes: a connection carries one job, or several, each
ended by the DLE EOT 1 status question the terminal's driver sends after a
job (a raw port-9100 printer takes job after job on one connection). It can be
switched off (the port refuses connections and open ones are reset) and on
again (same port), can cut the next job after N bytes and go away (the
paper-jam / pulled-cable case: the connection is reset with the rest unread),
and answers DLE EOT status queries unless told not to. Each connection is
served on its own thread.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from devices.emulated.escpos_text import escpos_to_text

__all__ = ["EmulatedNetworkPrinter"]

_STATUS_QUERY = b"\x10\x04"
# Status bytes of an idle printer with paper (fixed bits 0x12 set; see escpos RT_MASK_*).
STATUS_ONLINE = 0x12
STATUS_PAPER_OK = 0x12
STATUS_PAPER_OUT = 0x72


class EmulatedNetworkPrinter:
    def __init__(self, *, answer_status: bool = True, encoding: str = "GB18030", hold_open: float = 0.0) -> None:
        self.host = "127.0.0.1"
        # Like many real network printers: keep a connection open this long after the client
        # has finished sending, instead of closing it (each connection served on its own thread).
        self.hold_open = hold_open
        self.port = 0
        self.answer_status = answer_status
        self.paper_out = False
        self.encoding = encoding
        self.jobs: list[bytes] = []     # complete jobs, in order
        self.torn: list[bytes] = []     # jobs cut off part way
        self._fail_after: int | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.connections = 0            # how many connections were accepted
        self.switch_on()

    # -- power -----------------------------------------------------------
    @property
    def on(self) -> bool:
        return self._server is not None

    def switch_on(self) -> None:
        if self._server is not None:
            return
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.host, self.port))
        srv.listen(8)
        srv.settimeout(0.05)
        self.port = srv.getsockname()[1]
        self._server = srv
        self._thread = threading.Thread(target=self._serve, args=(srv,), name="emulated-printer", daemon=True)
        self._thread.start()

    def switch_off(self) -> None:
        srv = self._server
        if srv is not None:
            with contextlib.suppress(OSError):
                srv.shutdown(socket.SHUT_RDWR)     # wakes the accepting thread at once
            srv.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)    # the listening socket is gone before `on` turns false
        self._server = None
        with self._lock:
            live, self._conns = set(self._conns), set()
        for conn in live:   # power off: what was open is reset (its thread wakes, closes it with RST)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.shutdown(socket.SHUT_RD)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None

    def fail_after(self, nbytes: int) -> None:
        """Cut the next job after nbytes and switch off (the printer was pulled)."""
        self._fail_after = nbytes

    def close(self) -> None:
        self.switch_off()

    def __enter__(self) -> EmulatedNetworkPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what was printed ------------------------------------------------
    def texts(self) -> list[str]:
        with self._lock:
            return [escpos_to_text(j, self.encoding) for j in self.jobs]

    def wait_for_jobs(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.jobs) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    # -- server ----------------------------------------------------------
    def _serve(self, srv: socket.socket) -> None:
        while self._server is srv:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
                self.connections += 1
            threading.Thread(target=self._handle_and_close, args=(conn,), daemon=True).start()

    def _handle_and_close(self, conn: socket.socket) -> None:
        with conn:
            self._handle(conn)
        with self._lock:
            self._conns.discard(conn)

    def _job_done(self, job: bytes) -> None:
        printable = job.replace(_STATUS_QUERY + b"\x01", b"").replace(_STATUS_QUERY + b"\x04", b"")
        if printable:
            with self._changed:
                self.jobs.append(job)
                self._changed.notify_all()

    def _handle(self, conn: socket.socket) -> None:
        # An idle kept connection stays open (a raw port waits for the next job); switch_off resets it.
        conn.settimeout(None)
        received = bytearray()         # the job being received
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            received += chunk
            limit = self._fail_after
            if limit is not None and len(received) >= limit:
                self._fail_after = None
                with self._changed:
                    self.torn.append(bytes(received[:limit]))
                    self._changed.notify_all()
                # Reset, not a clean close: what the client sent after this is lost.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                threading.Thread(target=self.switch_off, daemon=True).start()
                return
            # A job ends with the status question: it is printed, then answered (the answer
            # tells the sender every byte before the question arrived).
            while (end := received.find(_STATUS_QUERY + b"\x01")) >= 0:
                job, received = bytes(received[:end + 3]), received[end + 3:]
                self._job_done(job)
            self._answer_status(conn, chunk)
        self._job_done(bytes(received))
        if self.hold_open:
            time.sleep(self.hold_open)   # the client's FIN is read; the printer's side stays open

    def _answer_status(self, conn: socket.socket, chunk: bytes) -> None:
        if not self.answer_status:
            return
        start = 0
        while (i := chunk.find(_STATUS_QUERY, start)) >= 0 and i + 2 < len(chunk):
            kind = chunk[i + 2]
            if kind == 1:
                conn.sendall(bytes([STATUS_ONLINE]))
            elif kind == 4:
                conn.sendall(bytes([STATUS_PAPER_OUT if self.paper_out else STATUS_PAPER_OK]))
            start = i + 3
