"""The manager PIN: a salted scrypt hash in the config, and a lockout after wrong tries.

The hash format is `scrypt$N$r$p$<salt b64>$<hash b64>` (hashlib.scrypt, the
standard library's memory-hard KDF), so a copied config file does not give the
PIN away cheaply. After `max_attempts` wrong PINs the manager menu is locked
for `lockout` seconds; the lock is kept in a small state file so a restart
does not reset it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pos.core.errors import UserError

__all__ = ["hash_pin", "verify_pin", "PinGuard", "PinCheck", "check_pin_format", "write_pin_hash"]

# scrypt cost: ~16 MiB and ~50 ms on a small POS box; a PIN has little entropy,
# so the cost per guess is what protects it.
_N, _R, _P = 2**14, 8, 1
_PIN_RE = re.compile(r"^[0-9]{4,12}$")


def check_pin_format(pin: str) -> None:
    if not _PIN_RE.fullmatch(pin or ""):
        raise UserError("a PIN is 4 to 12 digits")


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    check_pin_format(pin)
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_pin(pin: str, stored: str) -> bool:
    """Constant-time check of a PIN against a stored hash; False for any malformed input."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        got = hashlib.scrypt(pin.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True)
class PinCheck:
    ok: bool
    locked: bool
    attempts_left: int
    locked_for: float  # seconds until the menu opens again (0 when not locked)


class PinGuard:
    """Counts wrong PINs and locks the manager menu; state survives restarts."""

    def __init__(self, stored_hash: str, *, max_attempts: int, lockout: float, state_file: Path | None,
                 clock: Callable[[], float]) -> None:
        self._hash = stored_hash
        self._max = max_attempts
        self._lockout = lockout
        self._file = state_file
        self._clock = clock
        self._failures = 0
        self._locked_until = 0.0
        self._load()

    @property
    def enabled(self) -> bool:
        return bool(self._hash)

    def check(self, pin: str) -> PinCheck:
        now = self._clock()
        if now < self._locked_until:
            return PinCheck(False, True, 0, self._locked_until - now)
        if self._hash and verify_pin(pin, self._hash):
            self._failures = 0
            self._save()
            return PinCheck(True, False, self._max, 0.0)
        self._failures += 1
        if self._failures >= self._max:
            self._failures = 0
            self._locked_until = now + self._lockout
            self._save()
            return PinCheck(False, True, 0, self._lockout)
        self._save()
        return PinCheck(False, False, self._max - self._failures, 0.0)

    def locked_for(self) -> float:
        return max(0.0, self._locked_until - self._clock())

    def _load(self) -> None:
        if not self._file or not self._file.exists():
            return
        try:
            data = json.loads(self._file.read_text())
            self._failures = int(data.get("failures", 0))
            self._locked_until = float(data.get("locked_until", 0.0))
        except (ValueError, OSError):
            # A damaged lock file must not open the menu: lock for one period.
            self._locked_until = self._clock() + self._lockout

    def _save(self) -> None:
        if not self._file:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"failures": self._failures, "locked_until": self._locked_until}))
        os.replace(tmp, self._file)


_MANAGER_RE = re.compile(r"^\s*\[manager\]\s*$")
_SECTION_RE = re.compile(r"^\s*\[")
_PIN_HASH_RE = re.compile(r"^\s*pin_hash\s*=")


def write_pin_hash(config_path: Path, pin_hash: str) -> None:
    """Set [manager] pin_hash in the TOML file in place, keeping every other line.

    Written to a temporary file in the same folder and renamed, so a crash
    never leaves a half-written config.
    """
    lines = config_path.read_text("utf-8").splitlines(keepends=True)
    new_line = f'pin_hash = "{pin_hash}"\n'
    out: list[str] = []
    in_manager = done = False
    for line in lines:
        if _SECTION_RE.match(line):
            if in_manager and not done:
                out.append(new_line)
                done = True
            in_manager = bool(_MANAGER_RE.match(line))
        elif in_manager and _PIN_HASH_RE.match(line):
            if not done:
                out.append(new_line)
                done = True
            continue
        out.append(line)
    if not done:
        if in_manager:
            out.append(new_line)
        else:
            if out and not out[-1].endswith("\n"):
                out.append("\n")
            out.append("\n[manager]\n" + new_line)
    mode = config_path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=config_path.parent, prefix=".pin-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(out)
        os.chmod(tmp, mode)
        os.replace(tmp, config_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
