"""Logging for journald: one line per event, key=value (or JSON) fields, no secrets.

Call sites log a short event name and structured fields:

    log.info("pay sent", extra={"kv": {"merchantTransId": mtid, "code": mask_code(code)}})

Every record also passes through a redaction filter that masks anything that
looks like a payment code (16-32 digits starting 25-30, reference §15), so a
mistake at a call site cannot put a bearer token into the journal.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from pos.core.redact import mask_code, redact

__all__ = ["setup_logging", "mask_code", "redact", "RedactingFilter"]


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            record.kv = {k: redact(v) if isinstance(v, str) else v for k, v in kv.items()}
        return True


def _kv_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"level={record.levelname}", f"logger={record.name}", f"event={_kv_value(record.getMessage())}"]
        for key, value in (getattr(record, "kv", None) or {}).items():
            parts.append(f"{key}={_kv_value(value)}")
        if record.exc_info and record.levelno >= logging.ERROR:
            exc = record.exc_info[1]
            parts.append(f"error={_kv_value(f'{type(exc).__name__}: {exc}')}")
        return redact(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"level": record.levelname, "logger": record.name, "event": record.getMessage()}
        data.update(getattr(record, "kv", None) or {})
        if record.exc_info and record.levelno >= logging.ERROR:
            exc = record.exc_info[1]
            data["error"] = f"{type(exc).__name__}: {exc}"
        return redact(json.dumps(data, ensure_ascii=False, default=str))


def setup_logging(level: str = "INFO", fmt: str = "kv", stream: Any = None) -> None:
    """Send the `pos`, `devices` and server loggers to stderr in one line per event."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(RedactingFilter())
    for name in ("pos", "devices", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # Access logs would record every till poll; the daemon logs sales itself.
    logging.getLogger("uvicorn.access").disabled = True
