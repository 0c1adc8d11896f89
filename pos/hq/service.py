"""`pos hq serve`: headquarters' HTTP service in the foreground until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from pos.core.errors import EXIT_UNAVAILABLE, UserError
from pos.hq.app import create_app
from pos.hq.db import HqDB
from pos.httpserver import ThreadedServer

__all__ = ["HqService", "serve"]

log = logging.getLogger("pos.hq")


class HqService:
    """The database checked, then the HTTP server started (a test starts and stops it in-process)."""

    def __init__(self, dsn: str, listen: str, *, tls_cert: str | None = None, tls_key: str | None = None,
                 client_ca: str | None = None) -> None:
        self.db = HqDB(dsn)
        self.db.check_schema()
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise UserError(f"--listen {listen}: expected HOST:PORT such as 0.0.0.0:8780")
        if client_ca and not tls_cert:
            raise UserError("--client-ca needs HTTPS: give --tls-cert and --tls-key too")
        if client_ca and not Path(client_ca).is_file():
            raise UserError(f"--client-ca {client_ca}: no such file: give the terminals' CA certificate "
                            "('pos hq init-ca' wrote it)")
        try:
            self.server = ThreadedServer(create_app(self.db), host.strip("[]"), int(port), name="pos-hq",
                                         ssl_certfile=tls_cert, ssl_keyfile=tls_key, client_ca=client_ca)
        except OSError as exc:
            raise UserError(f"--listen {listen}: {exc}: another program uses that address",
                            exit_code=EXIT_UNAVAILABLE) from None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> HqService:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.db.close()


def serve(dsn: str, listen: str, *, tls_cert: str | None = None, tls_key: str | None = None,
          client_ca: str | None = None) -> int:
    service = HqService(dsn, listen, tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca).start()
    log.info("headquarters listening", extra={"kv": {"url": service.url}})
    print(f"headquarters listening on {service.url}", flush=True)
    done = threading.Event()

    def _stop(*_: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    done.wait()
    service.stop()
    return 0
