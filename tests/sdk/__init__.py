"""Helpers around Alipay's official Python SDK (interop test and bench): its venv, a TLS test CA."""
