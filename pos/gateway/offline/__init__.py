"""Alipay's offline acquiring protocol (alipay.intl.acquiring.offline.*): everything specific to it.

- `client.py`: `OfflineGateway`, the HTTPS client (pay, payQuery, payCancel,
  refund), its function/path table and its time format;
- `status.py`: payQuery's status words read as core `QueryOutcome`s;
- `answer.py`: the ids and amounts of an answer (acquirementId, refundId,
  payAmount, conversionRate) read into the outcomes' typed fields;
- `codes.py`: the protocol's result-code table.

The shared parts (RSA2 signing, key files, notify) stay in pos/gateway/.
"""

from pos.gateway.offline.client import FUNCTIONS, OfflineFunction, OfflineGateway, function_url, rfc3339
from pos.gateway.offline.codes import ResultCode, result_codes
from pos.gateway.offline.status import DEFAULT_NOT_FOUND, query_outcome, read_query

__all__ = [
    "FUNCTIONS", "OfflineFunction", "OfflineGateway", "function_url", "rfc3339",
    "ResultCode", "result_codes", "DEFAULT_NOT_FOUND", "query_outcome", "read_query",
]
