"""The local sandbox gateway: behaves like Alipay's offline acquiring gateway on 127.0.0.1.

- `ledger.py`: the pure model of what was charged, cancelled and refunded;
- `scenarios.py`: scripted outcomes chosen by the payment code, and `SandboxOptions`;
- `server.py`: the HTTP wrapper (Starlette under uvicorn), signing and verifying;
- `direct.py`: the same ledger as an in-process `Gateway`, for fast engine tests.
"""
