"""Gateway protocols: one package per protocol family (offline/), and what they share.

Every protocol answers with the core outcomes (pos/core/outcomes.py) and its
client implements `GatewayClient` (client.py); `factory.open_gateway` picks
the client `[gateway] protocol` names. Shared: signing.py (RSA2), keys.py
(key files), notify.py (the notify SPI).
"""
