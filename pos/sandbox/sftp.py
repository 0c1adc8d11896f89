"""A local SFTP server for Alipay's reconciliation files: tests and the demo fetch the sandbox's files from it.

Real SSH (asyncssh's server) on 127.0.0.1 with a host key and a password, serving
one folder as its root, so the product's client is exercised exactly as against
Alipay's server (seed 003). Test knobs make the hard cases happen on purpose:
`drop_after[name] = N` aborts the connection once N bytes of that file were served
(once), and `change_after[name] = (N, data)` appends `data` to the file and moves its
time once N bytes were served, as if Alipay rewrote it mid-download.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import asyncssh

__all__ = ["SandboxSftp"]


class SandboxSftp:
    """One SFTP server on 127.0.0.1, run on its own event loop thread. Use as a context manager."""

    def __init__(self, root: Path, *, username: str = "alipay", password: str = "sandbox",
                 host_key: Path | None = None, port: int = 0, client_key: Path | None = None) -> None:
        self.root = Path(root)
        # a client's public key (OpenSSH format) that may log in instead of the password
        self.client_key = asyncssh.read_public_key(str(client_key)) if client_key is not None else None
        self.username, self.password = username, password
        if host_key is not None and host_key.exists():
            self.key = asyncssh.read_private_key(str(host_key))
        else:
            self.key = asyncssh.generate_private_key("ssh-ed25519")
            if host_key is not None:
                host_key.write_bytes(self.key.export_private_key())
                host_key.chmod(0o600)
        self.fingerprint: str = self.key.get_fingerprint("sha256")
        self._port = port
        self.port = 0
        self.drop_after: dict[str, int] = {}
        self.change_after: dict[str, tuple[int, bytes]] = {}
        self.logins = 0              # successful logins
        self.auth_attempts = 0       # passwords offered (right or wrong)
        self.bytes_served: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox-sftp", daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None

    def start(self) -> SandboxSftp:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=10)
        return self

    async def _start(self) -> None:
        owner = self

        class _Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def public_key_auth_supported(self) -> bool:
                return owner.client_key is not None

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                return username == owner.username and owner.client_key is not None \
                    and key.public_data == owner.client_key.public_data

            def validate_password(self, username: str, password: str) -> bool:
                owner.auth_attempts += 1
                return username == owner.username and password == owner.password

            def auth_completed(self) -> None:
                owner.logins += 1

        self._server = await asyncssh.create_server(
            _Server, "127.0.0.1", self._port, server_host_keys=[self.key],
            sftp_factory=lambda chan: _Sftp(chan, owner), allow_scp=False)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> SandboxSftp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Sftp(asyncssh.SFTPServer):
    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], owner: SandboxSftp) -> None:
        super().__init__(chan, chroot=os.fsencode(owner.root))
        self.owner = owner
        self.names: dict[int, tuple[str, Path]] = {}

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        file_obj = super().open(path, pflags, attrs)
        local = Path(os.fsdecode(self.map_path(path)))
        self.names[id(file_obj)] = (local.name, local)
        return file_obj

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        data = super().read(file_obj, offset, size)
        assert isinstance(data, bytes)
        name, local = self.names.get(id(file_obj), ("", Path()))
        owner = self.owner
        owner.bytes_served[name] = owner.bytes_served.get(name, 0) + len(data)
        end = offset + len(data)
        if name in owner.drop_after and end >= owner.drop_after[name]:
            del owner.drop_after[name]
            self.connection.abort()
            return b""
        if name in owner.change_after and end >= owner.change_after[name][0]:
            extra = owner.change_after.pop(name)[1]
            with local.open("ab") as f:
                f.write(extra)
            later = time.time() + 60
            os.utime(local, (later, later))
        return data
