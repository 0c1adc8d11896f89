"""Barcode payment terminal for Alipay's offline acquiring gateway."""

__version__ = "0.1.0"
