"""Logs are one line per event with fields, and never carry a payment code in full."""

import io
import json
import logging

from pos.ops.logs import mask_code, redact, setup_logging


def test_kv_line_and_redaction():
    out = io.StringIO()
    setup_logging("INFO", "kv", out)
    log = logging.getLogger("pos.test")
    log.info("pay sent", extra={"kv": {"merchantTransId": "POS01-20261122-AB12-000001", "amount": "12.50 USD"}})
    log.info("oops %s", "281000123456789012")  # a call-site mistake
    log.info("scan", extra={"kv": {"code": "281000123456789012"}})
    lines = out.getvalue().splitlines()
    assert lines[0] == ('level=INFO logger=pos.test event="pay sent" merchantTransId=POS01-20261122-AB12-000001 '
                        'amount="12.50 USD"')
    assert "281000123456789012" not in out.getvalue()
    assert lines[1].endswith(" **************9012\"") and "code=**************9012" in lines[2]


def test_json_lines():
    out = io.StringIO()
    setup_logging("DEBUG", "json", out)
    logging.getLogger("devices.scanner").debug("scan", extra={"kv": {"code": "2899123456789012345678"}})
    data = json.loads(out.getvalue())
    assert data == {"level": "DEBUG", "logger": "devices.scanner", "event": "scan", "code": "*" * 18 + "5678"}


def test_redact_leaves_other_numbers():
    acquirement = "20240501111212800100166000012345678"
    assert redact(f"id={acquirement}") == f"id={acquirement}"
    assert redact("code 2512345678901234 end") == "code ************1234 end"
    assert mask_code("2512345678901234") == "************1234" and mask_code(None) == ""
