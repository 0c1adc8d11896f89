"""`pos doctor`'s device checks: scanner, displays, keypad (the serial port opens) and the
receipt printer (online and paper, asked with ESC/POS real-time status where it can answer)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pos.config import Config
from pos.ops.checks import CheckResult, Level
from pos.ops.checks import fail as _fail
from pos.ops.checks import ok as _ok
from pos.ops.checks import warn as _warn

__all__ = ["check_scanner", "check_display", "check_cashier_display", "check_keypad", "check_printer",
           "check_receipt_font", "check_receipt_code", "receipt_code_problem"]

# ESC/POS real-time status (DLE EOT n): n=1 printer status, n=4 paper sensor.
DLE_EOT_PRINTER = b"\x10\x04\x01"
DLE_EOT_PAPER = b"\x10\x04\x04"


def _open_serial(url: str, baudrate: int, timeout: float) -> Any:
    import serial
    return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=timeout)


def _takes_data(port: Any, timeout: float) -> bool:
    """Whether the port's output has room within `timeout`, asked without writing a byte (the running
    daemon's screen stays as it is). A port with no file descriptor (loop://, socket://) counts as yes."""
    import select
    try:
        fd = port.fileno()
    except (AttributeError, ValueError, OSError):
        return True
    _, writable, _ = select.select([], [fd], [], timeout)
    return bool(writable)


def _serial_check(name: str, section: str, url: str, baudrate: int, timeout: float, *,
                  writes: bool = False) -> CheckResult:
    import serial
    try:
        port = _open_serial(url, baudrate, timeout)
    except (serial.SerialException, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        todo = (f"check the cable, [{section}] url, 'ls -l {url}', and that the service user is in "
                "group dialout (udev rule: [udev] in the config)")
        return _fail(name, f"cannot open {url}: {reason}", todo)
    try:
        stalled = writes and not _takes_data(port, timeout)
    finally:
        port.close()
    if stalled:
        return _fail(name, f"{url} opens but takes no data (its output stayed full for {timeout:g} s): the "
                           "display does not read", "check that the display is powered and its cable; the "
                                                    "terminal keeps selling and shows the current screen once "
                                                    "it reads again")
    return _ok(name, f"{url} opens at {baudrate} baud")


def check_scanner(cfg: Config, *, timeout: float = 0.5) -> CheckResult:
    if cfg.scanner.kind == "none":
        return _ok("scanner", "kind none: no scanner configured (payment codes come from the till)")
    return _serial_check("scanner", "scanner", cfg.scanner.url, cfg.scanner.baudrate, timeout)


def check_display(cfg: Config, *, timeout: float = 0.5) -> CheckResult:
    if cfg.display.kind != "serial":
        return _ok("display", f"kind {cfg.display.kind}: no customer display hardware")
    return _serial_check("display", "display", cfg.display.url, cfg.display.baudrate, timeout, writes=True)


def check_cashier_display(cfg: Config, *, timeout: float = 0.5) -> CheckResult:
    d = cfg.cashier_display
    if d.kind != "serial":
        where = "log" if d.kind == "console" else "void"
        return _ok("cashier display", f"kind {d.kind}: cashier texts go to the {where}")
    return _serial_check("cashier display", "cashier_display", d.url, d.baudrate, timeout, writes=True)


def check_keypad(cfg: Config, *, timeout: float = 0.5) -> CheckResult:
    if cfg.keypad.kind != "serial":
        return _ok("keypad", f"kind {cfg.keypad.kind}")
    return _serial_check("keypad", "keypad", cfg.keypad.url, cfg.keypad.baudrate, timeout)


def _status_bytes(exchange: Callable[[bytes], bytes]) -> tuple[str, str, Level]:
    """Ask DLE EOT 1 and 4; describe online/paper. 'unknown' when the printer does not answer."""
    online_raw = exchange(DLE_EOT_PRINTER)
    paper_raw = exchange(DLE_EOT_PAPER)
    level = Level.OK
    if not online_raw:
        online, level = "online unknown", Level.WARN
    elif online_raw[0] & 0x08:
        online, level = "OFFLINE (cover open or error)", Level.FAIL
    else:
        online = "online"
    if not paper_raw:
        paper = "paper unknown (no answer to the status query)"
        level = Level.FAIL if level is Level.FAIL else Level.WARN
    elif paper_raw[0] & 0x60:
        paper, level = "NO PAPER", Level.FAIL
    elif paper_raw[0] & 0x0C:
        paper = "paper near end"
        level = Level.FAIL if level is Level.FAIL else Level.WARN
    else:
        paper = "paper ok"
    return online, paper, level


def _printer_result(where: str, online: str, paper: str, level: Level) -> CheckResult:
    detail = f"{where}: {online}, {paper}"
    if level is Level.FAIL:
        return _fail("printer", detail, "open the cover, load paper, clear the error; receipts wait in the queue")
    return CheckResult("printer", level, detail)


def check_receipt_font(cfg: Config) -> CheckResult:
    """Receipt pictures (`pos receipt show --png`, headquarters' dashboard) need a font with Chinese characters."""
    from devices.receipt_image import CJK_PACKAGE, cjk_font

    name = "receipt font"
    found = cjk_font()
    if found is None:
        return _warn(name, "no font with Chinese characters: receipt pictures would draw Chinese text (zh-CN "
                           f"labels, order titles, store names) as boxes — run 'apt-get install {CJK_PACKAGE}'")
    return _ok(name, f"Chinese characters drawn with {found.path}")


# A merchantTransId as the journal makes them (terminal, local date, install id, sequence), for sizing its code.
TYPICAL_ID = "{terminal}-20240501-VE6E99-000001"


def receipt_code_problem(cfg: Config) -> str | None:
    """What is wrong with `[printer] print_qr = false` for this terminal, or None: its receipt codes
    (a typical merchantTransId) do not fit the paper as Code 128 at `narrowest_bar`, so every receipt
    would carry a QR code instead (devices.receipt falls back to one, with a warning in the log)."""
    from devices.receipt import Paper, bar_width, code128_modules
    from devices.receipt_code import receipt_code

    p = cfg.printer
    if p.print_qr or p.kind == "none":
        return None
    paper = Paper.of(p)
    code = receipt_code(TYPICAL_ID.format(terminal=cfg.terminal.terminal_id))
    if bar_width(code, paper.dots, narrowest=paper.narrowest_bar) is not None:
        return None
    modules = code128_modules(code)
    todo = "set print_qr = true (the default: a scanner that reads Alipay codes from phones reads QR codes)"
    if paper.narrowest_bar > 1:
        todo += ", or narrowest_bar = 1 if the printer's manual says GS w accepts 1"
    return (f"[printer] print_qr = false, but this terminal's receipt code (such as {code}: {modules} modules) "
            f"needs {modules * paper.narrowest_bar} dots at narrowest_bar = {paper.narrowest_bar} and the paper "
            f"has {paper.dots}: receipts will carry a QR code instead — {todo}")


def check_receipt_code(cfg: Config) -> CheckResult:
    """The receipt code a manager scans to refund: a QR code, or a Code 128 barcode that fits the paper."""
    name = "receipt code"
    problem = receipt_code_problem(cfg)
    if problem is not None:
        return _warn(name, problem)
    if cfg.printer.print_qr:
        return _ok(name, "QR code (print_qr = true)")
    from devices.receipt import Paper, bar_width
    from devices.receipt_code import receipt_code

    paper = Paper.of(cfg.printer)
    code = receipt_code(TYPICAL_ID.format(terminal=cfg.terminal.terminal_id))
    bar = bar_width(code, paper.dots, narrowest=paper.narrowest_bar)
    return _ok(name, f"Code 128 (print_qr = false): {code} prints at {bar} dot{'s' if bar != 1 else ''} a bar "
                     f"on the {paper.dots}-dot paper")


def check_printer(cfg: Config, *, timeout: float = 0.5) -> CheckResult:
    p = cfg.printer
    name = "printer"
    if p.kind in ("dummy", "none"):
        return _ok(name, f"kind {p.kind}: receipts are not printed on paper")
    if p.kind == "file":
        path = Path(p.path)
        if not p.path or not path.exists():
            return _fail(name, f"{p.path or '(empty path)'} does not exist", "check the cable and [printer] path")
        if not os.access(path, os.W_OK):
            return _fail(name, f"{p.path} is not writable by this user", "add the service user to group lp")
        return _warn(name, f"{p.path} is writable; online/paper unknown (file printers do not answer)")
    if p.kind == "serial":
        import serial
        try:
            port = _open_serial(p.url, p.baudrate, timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            return _fail(name, f"cannot open {p.url}: {reason}",
                         f"check the cable, [printer] url, 'ls -l {p.url}' and group dialout")
        try:
            def exchange(query: bytes) -> bytes:
                port.reset_input_buffer()
                port.write(query)
                port.flush()
                return bytes(port.read(1))
            online, paper, level = _status_bytes(exchange)
        except (serial.SerialException, OSError) as exc:
            return _warn(name, f"{p.url} opens, status unknown ({exc})")
        finally:
            port.close()
        return _printer_result(p.url, online, paper, level)
    if p.kind == "network":
        where = f"{p.host} port {p.port}"
        try:
            sock = socket.create_connection((p.host, p.port), timeout=timeout)
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            return _fail(name, f"cannot connect to {where} ({reason})",
                         "check the printer's power, cable and [printer] host")
        try:
            def exchange_net(query: bytes) -> bytes:
                sock.sendall(query)
                try:
                    return sock.recv(1)
                except TimeoutError:
                    return b""
            online, paper, level = _status_bytes(exchange_net)
        except OSError as exc:
            return _warn(name, f"{where} connects, status unknown ({exc})")
        finally:
            sock.close()
        return _printer_result(f"{p.host}:{p.port}", online, paper, level)
    # usb: python-escpos/libusb finds it by id; we can only see whether the device is on the bus.
    vid, pid = f"{p.usb_vendor:04x}", f"{p.usb_product:04x}"
    for dev in Path("/sys/bus/usb/devices").glob("*"):
        try:
            if (dev / "idVendor").read_text().strip() == vid and (dev / "idProduct").read_text().strip() == pid:
                return _warn(name, f"USB {vid}:{pid} is connected; online/paper unknown over raw USB")
        except OSError:
            continue
    return _fail(name, f"USB printer {vid}:{pid} is not connected",
                 "check the cable and [printer] usb_vendor/usb_product (lsusb)")
