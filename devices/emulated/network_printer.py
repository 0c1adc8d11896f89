"""An emulated network (raw TCP, port-9100 style) receipt printer on 127.0.0.1.

It records each connection's bytes as one job, can be switched off (the port
refuses connections) and on again (same port), can cut the next job after N
bytes and go away (the paper-jam / pulled-cable case: the connection is reset
with the rest unread), and answers DLE EOT status queries unless told not to.
"""

from __future__ import annotations

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
        srv, self._server = self._server, None
        if srv is not None:
            srv.close()
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
            if self.hold_open:
                threading.Thread(target=self._handle_and_close, args=(conn,), daemon=True).start()
                continue
            with conn:
                self._handle(conn)

    def _handle_and_close(self, conn: socket.socket) -> None:
        with conn:
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        received = bytearray()
        limit = self._fail_after
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            received += chunk
            if limit is not None and len(received) >= limit:
                self._fail_after = None
                with self._changed:
                    self.torn.append(bytes(received[:limit]))
                    self._changed.notify_all()
                # Reset, not a clean close: what the client sent after this is lost.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                threading.Thread(target=self.switch_off, daemon=True).start()
                return
            self._answer_status(conn, chunk)
        job = bytes(received)
        printable = job.replace(_STATUS_QUERY + b"\x01", b"").replace(_STATUS_QUERY + b"\x04", b"")
        if printable:
            with self._changed:
                self.jobs.append(job)
                self._changed.notify_all()
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
