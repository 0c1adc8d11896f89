"""The local sandbox gateway: behaves like Alipay's offline acquiring gateway on 127.0.0.1.

- `ledger.py`: the pure model of what was charged, cancelled and refunded;
- `scenarios.py`: scripted outcomes chosen by the payment code, and `SandboxOptions`;
- `offline.py`: the offline acquiring protocol (routing, envelope checks, verifying
  requests and signing answers), one `SandboxProtocol` (protocol.py);
- `server.py`: the protocol-neutral HTTP host (Starlette under uvicorn);
- `direct.py`: the same ledger as an in-process `Gateway`, for fast engine tests.
"""
