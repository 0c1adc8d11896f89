"""Alipay's v1 payments API (Antom / Alipay+, paths /ams/api/v1/payments/...): everything specific to it.

- `client.py`: `AmsGateway`, the HTTPS client (pay, inquiryPayment, cancel,
  refund, inquiryRefund, consult) and its path table;
- `signing.py`: the header signature scheme;
- `status.py`: inquiryPayment's paymentStatus read as core `QueryOutcome`s;
- `codes.py`: the protocol's result-code table (pos/data/ams_result_codes.csv).
"""

from pos.gateway.ams.client import ENDPOINTS, PRODUCT_CODE, AmsGateway, path_prefix, request_time
from pos.gateway.ams.codes import result_codes

__all__ = ["AmsGateway", "ENDPOINTS", "PRODUCT_CODE", "path_prefix", "request_time", "result_codes"]
