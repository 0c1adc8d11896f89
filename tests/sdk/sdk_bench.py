"""Runs inside the official SDK's venv: inquiryPayment calls for SECONDS against URL; prints calls and seconds.

Usage: sdk_bench.py CONFIG.json SECONDS (CONFIG as for sdk_client.py). Never imports pos.
"""

import json
import sys
import time

from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.request.pay.alipay_pay_query_request import AlipayPayQueryRequest


def main():
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    seconds = float(sys.argv[2])
    client = DefaultAlipayClient(cfg["url"], cfg["client_id"], cfg["merchant_private_key"],
                                 cfg["alipay_public_key"])
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        query = AlipayPayQueryRequest()
        query.payment_request_id = "BENCH-NONE"
        json.loads(client.execute(query))
        calls += 1
    print(json.dumps({"calls": calls, "seconds": elapsed}))


main()
