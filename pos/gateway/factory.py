"""`open_gateway(config)`: the gateway client the configuration's `[gateway] protocol` names.

To add a protocol (the v1 payments API, say "ams"): write its client in a
package of its own beside pos/gateway/offline/ (a class with
`from_config(config)` that implements `GatewayClient`) and its sandbox
module beside pos/sandbox/offline.py, then add ONE line to `PROTOCOLS` below
(and its name to the `protocol` Literal of `GatewaySection` in pos/config.py,
which is what refuses an unknown name with a clear config error).
"""

from __future__ import annotations

from collections.abc import Callable

from pos.config import Config
from pos.gateway.ams.client import AmsGateway
from pos.gateway.ams.codes import result_codes as ams_result_codes
from pos.gateway.client import GatewayClient
from pos.gateway.offline.client import OfflineGateway
from pos.gateway.offline.codes import ResultCode
from pos.gateway.offline.codes import result_codes as offline_result_codes

__all__ = ["PROTOCOLS", "RESULT_CODES", "open_gateway", "result_codes_for"]

# [gateway] protocol -> the constructor of its client.
PROTOCOLS: dict[str, Callable[[Config], GatewayClient]] = {
    "offline": OfflineGateway.from_config,
    "ams": AmsGateway.from_config,
}

# [gateway] protocol -> its result-code table (the terminal reads a code's status and meaning).
RESULT_CODES: dict[str, Callable[[], dict[str, ResultCode]]] = {
    "offline": offline_result_codes,
    "ams": ams_result_codes,
}


def open_gateway(config: Config) -> GatewayClient:
    """The client for `config.gateway.protocol`, reading its keys from the configured files."""
    return PROTOCOLS[config.gateway.protocol](config)


def result_codes_for(config: Config) -> dict[str, ResultCode]:
    """The result-code table of the configured protocol."""
    return RESULT_CODES[config.gateway.protocol]()
