"""Shared fixtures for anything that talks to the sandbox gateway.

Use them from a test module with
    from tests.sandbox_fixtures import *  # noqa: F401,F403  (pytest finds fixtures by name)
or list this module in a conftest's `pytest_plugins`.

- `FakeClock`: a settable aware-datetime clock (`clock.advance(seconds)`).
- `make_code(scenario)`: a fresh single-use 18-digit test code ("28" + NN + 14 digits).
- fixtures: `sandbox_keys` (session: four PEM files in a tmp folder + loaded keys),
  `sandbox_clock` (FakeClock), `sandbox_options` (short timings), `sandbox_server`
  (running SandboxServer on 127.0.0.1:<free port>, stopped afterwards),
  `gateway_settings` (a [gateway] section pointing at it), `offline_gateway`
  (an OfflineGateway on those settings), `direct_gateway` (DirectGateway on a fresh ledger).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pos.config import GatewaySection
from pos.gateway.keys import (
    ALIPAY_PRIVATE,
    ALIPAY_PUBLIC,
    MERCHANT_PRIVATE,
    MERCHANT_PUBLIC,
    generate_key_folder,
)
from pos.gateway.offline import OfflineGateway
from pos.gateway.signing import load_private_key, load_public_key
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger
from pos.sandbox.scenarios import SandboxOptions, make_code
from pos.sandbox.server import SandboxServer

__all__ = [
    "FakeClock", "SandboxKeys", "make_code", "short_options",
    "sandbox_keys", "sandbox_clock", "sandbox_options", "sandbox_server", "ams_server", "gateway_settings",
    "offline_gateway", "direct_gateway",
]

# 2024-05-01 12:00 Beijing time: mid-day, so the beijing_day cancel window is open.
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=8)))


class FakeClock:
    """A clock tests move by hand; returns aware datetimes."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass(frozen=True)
class SandboxKeys:
    folder: Path
    merchant_private: Any
    merchant_public: Any
    alipay_private: Any
    alipay_public: Any

    def path(self, name: str) -> Path:
        return self.folder / name


def short_options(**overrides: Any) -> SandboxOptions:
    """Sandbox options with test-sized timings (the held answers last 2 s)."""
    values: dict[str, Any] = dict(wallet_confirm_after=3.0, slow_response=2.0, late_success_after=90.0,
                                  race_delay=3.0, query_errors=2, cancel_errors=2)
    values.update(overrides)
    return SandboxOptions(**values)


@pytest.fixture(scope="session")
def sandbox_keys(tmp_path_factory: pytest.TempPathFactory) -> SandboxKeys:
    folder = tmp_path_factory.mktemp("sandbox-keys")
    generate_key_folder(folder)
    return SandboxKeys(folder, load_private_key(folder / MERCHANT_PRIVATE), load_public_key(folder / MERCHANT_PUBLIC),
                       load_private_key(folder / ALIPAY_PRIVATE), load_public_key(folder / ALIPAY_PUBLIC))


@pytest.fixture
def sandbox_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox_options() -> SandboxOptions:
    return short_options()


@pytest.fixture
def sandbox_server(sandbox_keys: SandboxKeys, sandbox_clock: FakeClock,
                   sandbox_options: SandboxOptions) -> Iterator[SandboxServer]:
    server = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                           alipay_private_key=sandbox_keys.alipay_private,
                           options=sandbox_options, clock=sandbox_clock)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ams_server(sandbox_keys: SandboxKeys, sandbox_clock: FakeClock,
               sandbox_options: SandboxOptions) -> Iterator[SandboxServer]:
    """The sandbox speaking Alipay's v1 API (protocol "ams") on 127.0.0.1."""
    server = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                           alipay_private_key=sandbox_keys.alipay_private,
                           options=sandbox_options, clock=sandbox_clock, protocol="ams")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway_settings(sandbox_server: SandboxServer, sandbox_keys: SandboxKeys) -> GatewaySection:
    return GatewaySection(url=sandbox_server.url, private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                          merchant_public_key=str(sandbox_keys.path(MERCHANT_PUBLIC)),
                          alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)),
                          connect_timeout=2.0, read_timeout=1.0, sandbox=True)


@pytest.fixture
def offline_gateway(gateway_settings: GatewaySection) -> Iterator[OfflineGateway]:
    gw = OfflineGateway(gateway_settings)
    try:
        yield gw
    finally:
        gw.close()


@pytest.fixture
def direct_gateway(sandbox_clock: FakeClock, sandbox_options: SandboxOptions) -> DirectGateway:
    return DirectGateway(Ledger(sandbox_options), sandbox_clock)
