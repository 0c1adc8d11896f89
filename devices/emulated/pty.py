"""A pty behind a stable symlink: the device path a driver opens stays valid
across unplug/replug, as a udev symlink (/dev/pos-scanner) does on a real box."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import tempfile
import threading
import tty
from pathlib import Path

__all__ = ["PtyDevice"]


class PtyDevice:
    """The master side of a pty whose slave is reachable at `self.path`.

    The driver under test opens `path` with pyserial; the twin reads and
    writes the master side.
    """

    def __init__(self, name: str = "device", directory: str | os.PathLike[str] | None = None) -> None:
        self._own_dir = directory is None
        self._dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="pos-pty-"))
        self.path = str(self._dir / name)
        self._lock = threading.Lock()
        self.master: int | None = None
        self._slave: int | None = None
        self.plug()

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self) -> None:
        """Create a new pty and point the symlink at its slave side."""
        with self._lock:
            if self.master is not None:
                return
            master, slave = os.openpty()
            # Raw mode before the driver opens it, so bytes written now are not
            # line-edited or echoed (pyserial sets raw mode itself on open).
            tty.setraw(slave)
            tmp = self.path + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(os.ttyname(slave), tmp)
            os.replace(tmp, self.path)
            self.master, self._slave = master, slave

    def unplug(self) -> None:
        """Close the pty: the driver's next read fails as on a pulled USB cable."""
        with self._lock:
            for fd in (self.master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self.master = self._slave = None

    def write(self, data: bytes) -> None:
        with self._lock:
            if self.master is None:
                raise OSError("device is unplugged")
            view = memoryview(data)
            while view:
                n = os.write(self.master, view)
                view = view[n:]

    def read(self, timeout: float = 0.0) -> bytes:
        """Whatever the driver wrote, waiting up to timeout for the first byte."""
        master = self.master
        if master is None:
            return b""
        out = bytearray()
        wait = timeout
        while True:
            ready, _, _ = select.select([master], [], [], wait)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            wait = 0.02  # collect the rest of a burst
        return bytes(out)

    def close(self) -> None:
        self.unplug()
        if os.path.lexists(self.path):
            os.unlink(self.path)
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
