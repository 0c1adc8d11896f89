"""Download a day's reconciliation files from Alipay's SFTP server (seed 003), resumably.

* The server's host key is pinned ([reconcile] host_key, "SHA256:..."): an unknown
  or changed key is refused before any password or key is offered, and the
  refusal shows the fingerprint the server offered.
* A file already complete in the archive (same size and time as on the server)
  is not fetched again; a partial one (`NAME.part`) resumes where it stopped if
  the server's file is unchanged, else it restarts.
* Every file is checked against the size the server gives; a file whose size or
  time changed while it was downloading is fetched again.
* A dropped connection is retried ([reconcile] attempts) and resumes.

The files carry no checksum or trailer (reference §16); the parser's checks
(header, field count, final line break) catch what the size cannot.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import posixpath
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import asyncssh

from pos.config import Config, check_private_file
from pos.core.errors import EXIT_UNAVAILABLE, ConfigError, UserError

__all__ = ["SftpSettings", "FetchError", "HostKeyError", "Fetched", "fetch_day", "archive_folder", "Progress"]

log = logging.getLogger("pos.reconcile")

BLOCK = 32 * 1024
_MAX_CHANGES = 3


class FetchError(UserError):
    """The files could not be fetched; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_UNAVAILABLE)


class HostKeyError(FetchError):
    """The server's host key is not the pinned one."""

    def __init__(self, message: str, offered: str) -> None:
        super().__init__(message)
        self.offered = offered


@dataclass(frozen=True)
class SftpSettings:
    host: str
    port: int
    username: str
    host_key: str
    remote_dir: str
    pattern: str
    password: str | None = None
    private_key: str | None = None
    timeout: float = 30.0
    attempts: int = 3

    @classmethod
    def from_config(cls, cfg: Config, day: str) -> SftpSettings:
        rc = cfg.reconcile
        if not rc.username:
            raise ConfigError("[reconcile] username is empty: set the SFTP username Alipay gave you")
        password = None
        if rc.password_file:
            path = Path(rc.password_file)
            if not path.is_file():
                raise ConfigError(f"[reconcile] password_file = '{path}': file not found")
            check_private_file(path, "[reconcile] password_file")
            password = path.read_text(encoding="utf-8").strip()
        elif rc.private_key:
            path = Path(rc.private_key)
            if not path.is_file():
                raise ConfigError(f"[reconcile] private_key = '{path}': file not found")
            check_private_file(path, "[reconcile] private_key")
        else:
            raise ConfigError("[reconcile] needs password_file or private_key (a file of mode 0600)")
        stamp = day.replace("-", "")
        fill = {"merchant_id": cfg.gateway.merchant_id, "date": stamp}
        return cls(host=rc.host, port=rc.port, username=rc.username, host_key=rc.host_key,
                   remote_dir=rc.remote_dir.format(**fill), pattern=rc.pattern.format(**fill),
                   password=password, private_key=rc.private_key or None, timeout=rc.timeout,
                   attempts=rc.attempts)


def archive_folder(cfg: Config, day: str) -> Path:
    base = Path(cfg.reconcile.archive_dir) if cfg.reconcile.archive_dir else Path(cfg.terminal.state_dir) / "reconcile"
    return base / day


@dataclass(frozen=True)
class Fetched:
    name: str
    size: int
    how: str          # fetched | resumed | unchanged | refetched (changed on the server while downloading)


class Progress:
    """A progress bar on a terminal; nothing otherwise (the log lines say what happened)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()

    def update(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // total if total else width
        pct = 100 * done // total if total else 100
        self.stream.write(f"\r{name[:40]:<40} [{'#' * filled}{'.' * (width - filled)}] {pct:3d}%")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


class _PinnedClient(asyncssh.SSHClient):
    def __init__(self, pin: str) -> None:
        self.pin = pin
        self.offered = ""

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.offered = key.get_fingerprint("sha256")
        return bool(self.pin) and hmac.compare_digest(self.offered.rstrip("="), self.pin.rstrip("="))


def fetch_day(settings: SftpSettings, folder: Path, *, say: Callable[[str], None] | None = None,
              progress: Progress | None = None) -> list[Fetched]:
    """Fetch every file of remote_dir matching pattern into folder; returns what happened to each."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    return asyncio.run(_fetch(settings, folder, say or log.info, progress))


async def _fetch(s: SftpSettings, folder: Path, say: Callable[[str], None],
                 progress: Progress | None) -> list[Fetched]:
    done: dict[str, Fetched] = {}
    attempt = 0
    while True:
        attempt += 1
        client = _PinnedClient(s.host_key)
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                s.host, s.port, username=s.username, password=s.password,
                client_keys=[s.private_key] if s.private_key else None, agent_path=None, config=(),
                known_hosts=([], [], []), client_factory=lambda c=client: c, login_timeout=s.timeout,
                preferred_auth="publickey" if s.private_key else "password,keyboard-interactive"),
                timeout=s.timeout)
        except asyncssh.HostKeyNotVerifiable:
            raise _host_key_error(s, client.offered) from None
        except asyncssh.PermissionDenied:
            raise FetchError(f"the SFTP server {s.host}:{s.port} refused the login of {s.username!r}: check "
                             "[reconcile] username and the password or key with Alipay") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if attempt >= s.attempts:
                raise FetchError(f"cannot reach the SFTP server {s.host}:{s.port}: {_why(exc)}; check the "
                                 "network and that this store's IP is on Alipay's whitelist") from None
            say(f"connection to {s.host}:{s.port} failed ({_why(exc)}); trying again ({attempt}/{s.attempts})")
            await asyncio.sleep(min(2.0 * attempt, 10.0))
            continue
        try:
            async with conn, conn.start_sftp_client() as sftp:
                names = await _list(sftp, s)
                for name in names:
                    if name not in done:
                        done[name] = await _fetch_one(sftp, posixpath.join(s.remote_dir, name), folder, name,
                                                      say, progress, s.timeout)
            return [done[n] for n in sorted(done)]
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.sftp.SFTPConnectionLost,
                OSError, TimeoutError) as exc:
            if attempt >= s.attempts:
                raise FetchError(f"the connection to {s.host}:{s.port} kept dropping ({_why(exc)}); "
                                 "run 'pos reconcile fetch' again later: it resumes where it stopped") from None
            say(f"connection lost ({_why(exc)}); reconnecting to resume ({attempt}/{s.attempts})")
            await asyncio.sleep(min(1.0 * attempt, 5.0))


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _host_key_error(s: SftpSettings, offered: str) -> HostKeyError:
    if not s.host_key:
        return HostKeyError(
            f"the SFTP server {s.host}:{s.port} offers host key {offered} and no host key is pinned: "
            f"confirm this fingerprint with Alipay, then set [reconcile] host_key = \"{offered}\"", offered)
    return HostKeyError(
        f"the SFTP server {s.host}:{s.port} offered host key {offered}, not the pinned {s.host_key}: "
        "nothing was sent to it. If Alipay announced a new key, confirm the fingerprint with them and "
        "update [reconcile] host_key; otherwise someone may be in the way", offered)


async def _list(sftp: asyncssh.SFTPClient, s: SftpSettings) -> list[str]:
    try:
        names = await sftp.listdir(s.remote_dir)
    except asyncssh.SFTPNoSuchFile:
        raise FetchError(f"the SFTP server has no folder {s.remote_dir}: the day's files are not there (yet); "
                         "Alipay publishes them after the day closes") from None
    except asyncssh.SFTPError as exc:
        raise FetchError(f"cannot list {s.remote_dir} on the SFTP server: {exc.reason}") from None
    return sorted(n for n in names if fnmatch.fnmatchcase(n, s.pattern))


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


async def _fetch_one(sftp: asyncssh.SFTPClient, remote: str, folder: Path, name: str,
                     say: Callable[[str], None], progress: Progress | None, timeout: float) -> Fetched:
    attrs = await sftp.stat(remote)
    size, mtime = int(attrs.size or 0), int(attrs.mtime or 0)
    final, meta_path = folder / name, folder / f".{name}.meta"
    part, part_meta = folder / f"{name}.part", folder / f".{name}.part.meta"
    meta = _read_meta(meta_path)
    if final.is_file() and meta.get("size") == size and meta.get("mtime") == mtime \
            and final.stat().st_size == size:
        say(f"{name}: already complete ({size} bytes)")
        return Fetched(name, size, "unchanged")
    how = "fetched"
    pm = _read_meta(part_meta)
    if part.is_file() and pm.get("size") == size and pm.get("mtime") == mtime and part.stat().st_size <= size:
        offset = part.stat().st_size
        if offset:
            how = "resumed"
            say(f"{name}: resuming at {offset} of {size} bytes")
    else:
        offset = 0
        part.write_bytes(b"")
        _write_meta(part_meta, {"size": size, "mtime": mtime})
    for _ in range(_MAX_CHANGES + 1):
        if offset == 0:
            say(f"{name}: downloading {size} bytes")
        async with sftp.open(remote, "rb") as f:
            with part.open("r+b") as out:
                out.seek(offset)
                out.truncate()
                while offset < size:
                    data = await asyncio.wait_for(f.read(min(BLOCK, size - offset), offset), timeout)
                    if not data:
                        break
                    assert isinstance(data, bytes)  # opened "rb"
                    out.write(data)
                    offset += len(data)
                    _write_progress(progress, name, offset, size)
                out.flush()
                os.fsync(out.fileno())
        after = await sftp.stat(remote)
        new_size, new_mtime = int(after.size or 0), int(after.mtime or 0)
        if offset == size and (new_size, new_mtime) == (size, mtime):
            digest = hashlib.sha256(part.read_bytes()).hexdigest()
            os.replace(part, final)
            _write_meta(meta_path, {"size": size, "mtime": mtime, "sha256": digest})
            part_meta.unlink(missing_ok=True)
            say(f"{name}: complete, {size} bytes, sha256 {digest[:16]}")
            return Fetched(name, size, how)
        say(f"{name}: changed on the server while downloading ({size} -> {new_size} bytes); fetching it again")
        how, size, mtime, offset = "refetched", new_size, new_mtime, 0
        _write_meta(part_meta, {"size": size, "mtime": mtime})
    raise FetchError(f"{remote} kept changing while it was downloading: try again later, when Alipay has "
                     "finished writing it")


def _write_progress(progress: Progress | None, name: str, done: int, total: int) -> None:
    if progress is not None:
        progress.update(name, done, total)
