"""Receipt printers: python-escpos back ends behind one small interface.

`ReceiptPrinter.send(data)` writes a rendered receipt (bytes from
`devices.receipt.render_receipt`) and returns only when the link accepted
every byte; any fault raises `PrinterError` (the print queue keeps the job).
`status()` reads online and paper state where the link is two-way.

| kind      | back end                                                          |
| --------- | ----------------------------------------------------------------- |
| network   | raw TCP (usually port 9100), one connection kept between jobs      |
| file      | a device node such as /dev/usb/lp0, or a plain file                |
| usb       | escpos `Usb` (needs pyusb, `pip install pyusb`)                    |
| serial    | `serial.serial_for_url(url)` - NOT escpos `Serial`, which opens    |
|           | `serial.Serial(port=...)` itself so pyserial URLs never reach it   |
| dummy     | keeps every job in memory (demo, tests)                            |
| none      | no printer: jobs wait in the queue                                 |

Receipts are rendered by python-escpos's encoder (`escpos.escpos.Escpos`)
into `escpos_buffer()`, an Escpos that keeps what it is given, as escpos's
`Dummy` does. Only the USB printer imports `escpos.printer`: that package
imports every back end it has (pyusb, CUPS, lp, win32, serial, network,
file) at once, about 1.5 MB the other kinds never use. The network, file
and serial printers send rendered bytes over their own links.

python-escpos 3.1 traps, contained by `load_escpos()` (the only place that
imports escpos):

1. `escpos.capabilities` parses its capabilities file (35 printer profiles)
   with PyYAML at import (~100 ms, 3 MB more memory than a pickled one)
   unless `ESCPOS_CAPABILITIES_PICKLE_DIR` names a folder that keeps the
   pickle between runs. We set it (if unset) to a persistent cache folder
   before the import: `configure_escpos_cache(dir)` (the daemon passes
   <state_dir>/cache/escpos), else $POS_CACHE_DIR, else
   $XDG_CACHE_HOME/pos-terminal/escpos (~/.cache/pos-terminal/escpos).
   Given the profiles in use (`configure_escpos_cache(dir, profiles=...)`,
   as the daemon does), the cache folder gets a capabilities file of
   those profiles only ("default" always: escpos builds it at import),
   taken verbatim from the library's file, and escpos reads it through its
   documented `ESCPOS_CAPABILITIES_FILE` variable (unless the environment
   sets that already): a 10 KB file instead of 96 KB. The pickle of that file
   is written beside it too, so PyYAML is not needed even at the first start.
2. It calls `tempfile.mkdtemp()` on every import even when the variable is
   set (the default argument of `environ.get` is evaluated first), leaving
   an empty folder in /tmp each start. We record the folders made during the
   import and remove them.
3. It calls `logging.basicConfig()` at import, and module-level
   `logging.info()` in open()/close() (which configures the root logger
   if it has no handler). We remove root handlers it added, at import and
   around every call into a back end.
4. `barcode()` prints "Using hardware barcode renderer" to stdout; rendering
   runs with stdout redirected.
5. `is_online()` returns False and `paper_status()` returns 2 ("paper
   adequate") when the printer does not answer; `read_status` reads the raw
   status byte and reports an unanswered query as unknown (None).
6. `escpos.escpos` imports at module level what only images, software QR
   codes and software barcodes use: Pillow's drawing, font and image
   operations, qrcode, and (through python-barcode's writers) xml.dom.minidom;
   `escpos.capabilities` imports PyYAML, used only when it rebuilds its
   pickle. Our receipts use none of them (the printer draws the QR code,
   GS ( k; the barcode is GS k; see devices/receipt.py): 3.2 MB. While
   escpos is imported, a finder gives those modules the standard library's
   lazy loader (`importlib.util.LazyLoader`, see the Python documentation's
   "Implementing lazy imports"; `_LazyFinder`): each is a module that runs
   its code at its first attribute access, so a software QR code or an
   image still works, its libraries loading then (a test prints both).
   `PIL.Image` itself loads at once (escpos.image evaluates `Image.Image` in
   a signature). Python 3.11's LazyLoader is not safe against two threads
   touching the same module first at the same moment (3.12.3 adds a lock):
   escpos uses them while rendering, under this module's lock
   (`quiet_stdout`).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import json
import logging
import os
import pickle
import platform
import re
import shutil
import socket
import sys
import tempfile
import threading
import types
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial

__all__ = [
    "PrinterError",
    "PrinterStatus",
    "ReceiptPrinter",
    "NetworkPrinter",
    "FilePrinter",
    "UsbPrinter",
    "SerialPrinter",
    "DummyPrinter",
    "NullPrinter",
    "open_printer",
    "load_escpos",
    "escpos_buffer",
    "configure_escpos_cache",
    "default_escpos_cache_dir",
    "contained_root_logging",
    "read_status",
    "ESCPOS_PICKLE_ENV",
]

log = logging.getLogger(__name__)

ESCPOS_PICKLE_ENV = "ESCPOS_CAPABILITIES_PICKLE_DIR"
ESCPOS_FILE_ENV = "ESCPOS_CAPABILITIES_FILE"
_escpos_lock = threading.RLock()
_escpos: types.ModuleType | None = None
_buffer_class: Any = None
# The capabilities file of the profiles in use, written before escpos is imported (trap 1).
_profiles_file: Path | None = None
_profiles: tuple[str, ...] = ()
# What escpos imports at module level that receipts drawn by the printer never use (trap 6).
ESCPOS_LAZY_MODULES = ("PIL.ImageDraw", "PIL.ImageFont", "PIL.ImageOps", "qrcode", "yaml", "xml.dom.minidom")


class PrinterError(Exception):
    """The printer did not take the job (away, out of paper, link closed...)."""


@dataclass(frozen=True)
class PrinterStatus:
    """online: True/False, None = unknown; paper: "ok" | "low" | "out" | None = unknown."""

    online: bool | None = None
    paper: str | None = None

    @property
    def known(self) -> bool:
        return self.online is not None


def default_escpos_cache_dir() -> Path:
    env = os.environ.get("POS_CACHE_DIR")
    if env:
        return Path(env) / "escpos"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pos-terminal" / "escpos"


def configure_escpos_cache(directory: str | os.PathLike[str], profiles: Iterable[str] = ()) -> bool:
    """Keep escpos's capabilities pickle in directory. Call before load_escpos().

    With `profiles` (the printer profiles this process renders for), escpos
    loads a capabilities file of those profiles only (and "default"), kept in
    a folder of directory named after them, with its pickle beside it.
    Returns False (and changes nothing) if escpos is already imported or the
    variable is already set by the environment.
    """
    global _profiles_file, _profiles
    if _escpos is not None or os.environ.get(ESCPOS_PICKLE_ENV):
        return False
    path = Path(directory)
    names = tuple(sorted({"default", *profiles}))
    subset = bool(profiles) and not os.environ.get(ESCPOS_FILE_ENV)
    if subset:
        path = path / ("profiles-" + "+".join(re.sub(r"[^A-Za-z0-9_.-]", "_", n) for n in names))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("escpos cache folder not usable path=%s error=%s", path, exc)
        return False
    os.environ[ESCPOS_PICKLE_ENV] = str(path)
    if subset:
        _profiles_file, _profiles = path / "capabilities.json", names
    return True


def _write_profiles_file(target: Path, names: tuple[str, ...]) -> bool:
    """The library's capabilities with only the profiles `names` (each verbatim) and every
    encoding; rewritten only when the library's file is newer (an upgrade). False if it cannot
    be written: escpos then reads its own file. Its pickle is written beside it (trap 1)."""
    import importlib.resources

    source = importlib.resources.files("escpos") / "capabilities.json"
    try:
        with importlib.resources.as_file(source) as source_path:
            if target.exists() and target.stat().st_mtime >= source_path.stat().st_mtime:
                _write_pickle(target, None)
                return True
            data = json.loads(source_path.read_text(encoding="utf-8"))
        data["profiles"] = {name: data["profiles"][name] for name in names if name in data["profiles"]}
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")   # one per process
        partial.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, target)     # newer than any pickle of an older file: escpos rebuilds it
    except (OSError, ValueError, KeyError) as exc:
        log.warning("escpos capabilities of the profiles in use not written path=%s error=%s", target, exc)
        return False
    _write_pickle(target, data)
    return True


def _write_pickle(capabilities: Path, data: dict[str, Any] | None) -> None:
    """The pickle escpos would make of `capabilities` at its import, made here from the same JSON, so
    that escpos loads it instead of parsing the file with PyYAML (which then never loads: 0.7 MB and
    its parse). Where escpos 3.1 looks for it (`escpos.capabilities.pickle_path`: the pickle folder,
    the Python version) and what it holds (the file's content, pickle protocol 2; YAML reads this
    JSON as the same dict, which a test checks). Kept while it is not older than the file; any
    failure leaves escpos to make it."""
    if os.environ.get(ESCPOS_PICKLE_ENV) != str(capabilities.parent):
        return
    target = capabilities.parent / f"{platform.python_version()}.capabilities.pickle"
    try:
        if target.exists() and target.stat().st_mtime >= capabilities.stat().st_mtime:
            return
        if data is None:
            data = json.loads(capabilities.read_text(encoding="utf-8"))
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")   # one per process
        partial.write_bytes(pickle.dumps(data, protocol=2))
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        log.warning("escpos capabilities pickle not written path=%s error=%s", target, exc)


@contextlib.contextmanager
def contained_root_logging() -> Iterator[None]:
    """Undo root-logger handlers that python-escpos adds (basicConfig, logging.info)."""
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


_PYTHON_CODE_LOADERS = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Finds the modules named, as the import system's path finder does, and gives them a loader
    that runs their code at their first attribute access (`importlib.util.LazyLoader`). In
    sys.meta_path only while escpos is imported: the `import qrcode` in escpos makes a module
    that stays empty until a software QR code needs it. (A module put in sys.modules beforehand,
    as the lazy-import recipe of the Python documentation does, would load at once: an `import`
    statement of a module already in sys.modules reads its `__spec__`.)"""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, _PYTHON_CODE_LOADERS):
            return spec     # not there (the import fails as it would have), or not Python code (left eager)
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def load_escpos() -> types.ModuleType:
    """Import python-escpos's encoder once, with its import-time side effects contained.

    Returns the `escpos.escpos` module (the `Escpos` class: every command a receipt is made of).
    """
    global _escpos
    with _escpos_lock:
        if _escpos is not None:
            return _escpos
        if not os.environ.get(ESCPOS_PICKLE_ENV):
            configure_escpos_cache(default_escpos_cache_dir())
        if _profiles_file is not None and not os.environ.get(ESCPOS_FILE_ENV) \
                and _write_profiles_file(_profiles_file, _profiles):
            os.environ[ESCPOS_FILE_ENV] = str(_profiles_file)
        made: list[str] = []
        real_mkdtemp = tempfile.mkdtemp

        def recording_mkdtemp(*args: Any, **kwargs: Any) -> str:
            path: str = real_mkdtemp(*args, **kwargs)
            made.append(path)
            return path

        tempfile.mkdtemp = recording_mkdtemp  # type: ignore[assignment]
        lazy = _LazyFinder(ESCPOS_LAZY_MODULES)
        sys.meta_path.insert(0, lazy)
        try:
            with contained_root_logging():
                import escpos.escpos as escpos_module  # import on purpose, late
        finally:
            sys.meta_path.remove(lazy)
            tempfile.mkdtemp = real_mkdtemp
        for path in made:
            # Without the variable the pickle went there; it is read only at import.
            shutil.rmtree(path, ignore_errors=True)
        # python-escpos ships no type information: its module is typed here, once.
        module: types.ModuleType = escpos_module
        _escpos = module
        return module


def escpos_buffer(profile: str | None = None) -> Any:
    """A python-escpos printer that keeps the bytes of every command it is given (`.output`),
    as escpos's `Dummy` does, without importing `escpos.printer` and its back ends."""
    global _buffer_class
    escpos = load_escpos()
    with _escpos_lock:
        if _buffer_class is None:

            class EscposBuffer(escpos.Escpos):  # type: ignore[name-defined,misc]
                """Escpos writing into memory."""

                def __init__(self, profile: str | None = None) -> None:
                    super().__init__(profile=profile)
                    self._output_list: list[bytes] = []

                def _raw(self, msg: bytes) -> None:
                    self._output_list.append(msg)

                @property
                def output(self) -> bytes:
                    return b"".join(self._output_list)

                def close(self) -> None:
                    return None

            _buffer_class = EscposBuffer
        return _buffer_class(profile=profile)


def _escpos_printers() -> types.ModuleType:
    """escpos's printer classes (`escpos.printer`: imports pyusb, CUPS and the rest); USB only."""
    load_escpos()
    with _escpos_lock, contained_root_logging():
        import escpos.printer as printer_module
    module: types.ModuleType = printer_module
    return module


def read_status(device: Any) -> PrinterStatus:
    """Online and paper state from an escpos printer with a two-way link.

    Unlike escpos's is_online()/paper_status(), no answer means unknown.
    """
    from escpos import constants as c  # the command bytes only: no profiles, no back end

    def query(mode: bytes) -> int | None:
        try:
            answer = device.query_status(mode)
        # escpos signals "this link cannot report status" with a RuntimeError subclass.
        except (TimeoutError, OSError, RuntimeError, AttributeError, AssertionError, serial.SerialException):
            return None
        return answer[0] if answer else None

    online_byte = query(c.RT_STATUS_ONLINE)
    if online_byte is None:
        return PrinterStatus(None, None)
    online = not (online_byte & c.RT_MASK_ONLINE)
    paper_byte = query(c.RT_STATUS_PAPER)
    paper: str | None
    if paper_byte is None:
        paper = None
    elif paper_byte & c.RT_MASK_NOPAPER == c.RT_MASK_NOPAPER:
        paper = "out"
    elif paper_byte & c.RT_MASK_LOWPAPER == c.RT_MASK_LOWPAPER:
        paper = "low"
    else:
        paper = "ok"
    return PrinterStatus(online, paper)


class ReceiptPrinter(ABC):
    """Where rendered receipts go."""

    description = "printer"

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Write all of data, or raise PrinterError."""

    def status(self) -> PrinterStatus:
        return PrinterStatus(None, None)

    def close(self) -> None:
        return None


# DLE EOT 1: "send printer status", answered at once with one byte (ESC/POS real-time command).
_PRINTER_STATUS = b"\x10\x04\x01"


class NetworkPrinter(ReceiptPrinter):
    """A raw TCP printer (port 9100): one connection kept open and reused for every job.

    After a job's bytes we ask for the printer's status (DLE EOT 1): its status
    byte can only come once every byte before the question has reached it, so
    the job is delivered; a reset instead means it dropped the job part way
    (the bytes only reached our kernel), which sendall alone would not tell us.

    A raw port takes job after job on one connection, so the connection stays
    open while the printer answers the status question on it: no connect and
    close per receipt. Before a job the kept connection is checked (a printer
    that closed it while idle is reconnected to); a job that fails on a kept
    connection is sent once more on a fresh one (a receipt may then print
    twice, never not at all: the queue is at least once already). A printer
    that does not answer the status question gets a connection per job, as
    before: the job, then a half-close, then its close (or `drain_timeout`).
    """

    def __init__(self, host: str, port: int = 9100, *, timeout: float = 5.0,
                 drain_timeout: float = 2.0, profile: str | None = None) -> None:
        self.host, self.port = host, port
        self.timeout, self.drain_timeout = timeout, drain_timeout
        self.profile = profile
        self.description = f"network printer {host}:{port}"
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None      # kept open between jobs
        self._answers: bool | None = None            # answers DLE EOT 1 on a job's connection (None: not known)

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise PrinterError(f"{self.description}: cannot connect: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def _still_open(sock: socket.socket) -> bool:
        """Whether a kept connection is still usable (the printer may have closed it while idle);
        a late status byte left on it is read away."""
        try:
            sock.setblocking(False)     # a timeout would make recv wait for data first
            while True:
                waiting = sock.recv(1024)
                if not waiting:
                    return False            # closed by the printer
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def send(self, data: bytes) -> None:
        with self._lock:
            if self._sock is not None:
                if self._still_open(self._sock):
                    try:
                        self._job_on_kept(self._sock, data)
                        return
                    except OSError:
                        pass        # the printer went away since: a fresh connection, the job again
                self._drop()
            sock = self._connect()
            try:
                self._job_on_fresh(sock, data)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    sock.close()
                raise PrinterError(f"{self.description}: connection lost while printing: {exc}") from None

    def _job_on_kept(self, sock: socket.socket, data: bytes) -> None:
        """The job on a kept connection: delivered when the status byte comes back; anything else
        (a reset, a close, no answer) raises OSError."""
        sock.settimeout(self.timeout)
        sock.sendall(data + _PRINTER_STATUS)
        sock.settimeout(self.drain_timeout)
        if not sock.recv(1):
            raise ConnectionResetError("the printer closed the connection")

    def _job_on_fresh(self, sock: socket.socket, data: bytes) -> None:
        if self._answers is False:
            # No status answers: one connection per job, the job confirmed by the printer's close.
            sock.sendall(data + _PRINTER_STATUS)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(self.drain_timeout)
            # The status byte, or the close; a timeout: still open but no reset, so the printer
            # kept the bytes.
            with contextlib.suppress(TimeoutError):
                sock.recv(1024)
            sock.close()
            return
        sock.sendall(data + _PRINTER_STATUS)
        sock.settimeout(self.drain_timeout)
        try:
            answer = sock.recv(1)
        except TimeoutError:
            answer = None
        if answer:                      # delivered, and the connection can take the next job
            self._answers = True
            self._sock = sock
            return
        # Closed after the job (delivered), or no answer and no reset (kept, as with the
        # half-close): either way not a connection to keep.
        if answer is None:
            self._answers = False
        sock.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def status(self) -> PrinterStatus:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError:  # cannot connect: the printer is away
            return PrinterStatus(False, None)
        try:
            sock.settimeout(min(self.timeout, 1.0))
            return read_status(_SocketLink(sock))
        finally:
            with contextlib.suppress(OSError):
                sock.close()


class _SocketLink:
    """The one call read_status needs, over a TCP connection to the printer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def query_status(self, mode: bytes) -> bytes:
        self.sock.sendall(mode)
        return self.sock.recv(16)


class FilePrinter(ReceiptPrinter):
    """A device node (/dev/usb/lp0) or a file, opened per job."""

    def __init__(self, path: str, *, profile: str | None = None) -> None:
        self.path = path
        self.profile = profile
        self.description = f"file printer {path}"

    def send(self, data: bytes) -> None:
        try:
            device = open(self.path, "wb")  # noqa: SIM115 - closed below, where its flush can fail too
        except OSError as exc:
            raise PrinterError(f"{self.description}: cannot open: {exc}") from None
        try:
            device.write(data)
            device.flush()
        except OSError as exc:
            raise PrinterError(f"{self.description}: write failed: {exc}") from None
        finally:
            try:
                device.close()
            except OSError as exc:  # flush at close can fail too
                raise PrinterError(f"{self.description}: write failed: {exc}") from None

    def status(self) -> PrinterStatus:
        # A file link is one-way: only "is the device there" is known.
        return PrinterStatus(None if os.path.exists(self.path) else False, None)


class UsbPrinter(ReceiptPrinter):
    """escpos Usb (needs pyusb and permission on the device node)."""

    def __init__(self, vendor: int, product: int, *, profile: str | None = None) -> None:
        self.vendor, self.product, self.profile = vendor, product, profile
        self.description = f"USB printer {vendor:04x}:{product:04x}"
        self._p: Any = None

    def _open(self) -> Any:
        if self._p is None:
            try:
                escpos = _escpos_printers()
                with contained_root_logging():
                    p = escpos.Usb(self.vendor, self.product, profile=self.profile)
                    p.open()
            except Exception as exc:  # pyusb missing, no device, no permission
                raise PrinterError(f"{self.description}: cannot open: {exc} "
                                   "(is pyusb installed and the device plugged in?)") from None
            self._p = p
        return self._p

    def send(self, data: bytes) -> None:
        p = self._open()
        try:
            with contained_root_logging():
                p._raw(data)
        except Exception as exc:  # usb.core.USBError and friends
            self.close()
            raise PrinterError(f"{self.description}: write failed: {exc}") from None

    def status(self) -> PrinterStatus:
        try:
            return read_status(self._open())
        except PrinterError:
            return PrinterStatus(False, None)

    def close(self) -> None:
        if self._p is not None:
            with contained_root_logging(), contextlib.suppress(Exception):  # already gone
                self._p.close()
            self._p = None


class SerialPrinter(ReceiptPrinter):
    """A serial printer on any pyserial URL (bytes rendered by python-escpos's encoder)."""

    def __init__(self, url: str, *, baudrate: int = 19200, write_timeout: float = 10.0,
                 status_timeout: float = 0.5) -> None:
        self.url, self.baudrate = url, baudrate
        self.write_timeout, self.status_timeout = write_timeout, status_timeout
        self.description = f"serial printer {url}"

    def _open(self) -> serial.SerialBase:
        try:
            return serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.status_timeout,
                                         write_timeout=self.write_timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PrinterError(f"{self.description}: cannot open: {exc}") from None

    def send(self, data: bytes) -> None:
        port = self._open()
        try:
            written = port.write(data)
            port.flush()
            if written is not None and written != len(data):
                raise PrinterError(f"{self.description}: only {written} of {len(data)} bytes written")
        except (serial.SerialException, OSError) as exc:
            raise PrinterError(f"{self.description}: write failed: {exc}") from None
        finally:
            port.close()

    def status(self) -> PrinterStatus:
        try:
            port = self._open()
        except PrinterError:
            return PrinterStatus(False, None)

        class _Link:  # the call read_status needs, over our pyserial port
            @staticmethod
            def query_status(mode: bytes) -> bytes:
                port.reset_input_buffer()
                port.write(mode)
                return bytes(port.read(1))

        try:
            return read_status(_Link())
        finally:
            port.close()


class DummyPrinter(ReceiptPrinter):
    """Keeps every job in memory (kind = "dummy"); can be switched away for tests."""

    description = "dummy printer"

    def __init__(self) -> None:
        self.jobs: list[bytes] = []
        self.online = True
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock:
            if not self.online:
                raise PrinterError("dummy printer is switched off")
            self.jobs.append(bytes(data))

    def status(self) -> PrinterStatus:
        return PrinterStatus(self.online, "ok" if self.online else None)


class NullPrinter(ReceiptPrinter):
    """kind = "none": nothing is printed; jobs wait in the queue."""

    description = "no printer"

    def send(self, data: bytes) -> None:
        raise PrinterError("no printer configured ([printer] kind = \"none\")")

    def status(self) -> PrinterStatus:
        return PrinterStatus(False, None)


def open_printer(settings: Any) -> ReceiptPrinter:
    """The printer named by a [printer] config section."""
    profile = None if settings.profile == "default" else settings.profile
    kind = settings.kind
    if kind == "network":
        return NetworkPrinter(settings.host, settings.port, profile=profile)
    if kind == "file":
        return FilePrinter(settings.path, profile=profile)
    if kind == "usb":
        return UsbPrinter(settings.usb_vendor, settings.usb_product, profile=profile)
    if kind == "serial":
        return SerialPrinter(settings.url, baudrate=settings.baudrate)
    if kind == "dummy":
        return DummyPrinter()
    return NullPrinter()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """escpos prints chatter to stdout (trap 4); keep it out of the daemon's output."""
    with _escpos_lock, contextlib.redirect_stdout(io.StringIO()):
        yield
