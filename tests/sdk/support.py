"""The official SDK's venv (.venv-sdk, from the package index) and TLS files for 127.0.0.1.

Shared by tests/test_ams_sdk.py and the v1 part of `make bench`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
SDK_VENV = REPO / ".venv-sdk"
SDK_PACKAGE = "global-open-sdk-python"


class SdkUnavailable(RuntimeError):
    """The SDK could not be installed here (no package index, say)."""


def sdk_python() -> Path:
    """The SDK's own interpreter; installed once. Its `enum34` dependency breaks Python 3: removed."""
    python = SDK_VENV / "bin" / "python"
    marker = SDK_VENV / ".installed"
    if marker.exists():
        return python
    steps = [[sys.executable, "-m", "venv", "--clear", str(SDK_VENV)],
             [str(python), "-m", "pip", "install", "-q", SDK_PACKAGE],
             [str(python), "-m", "pip", "uninstall", "-y", "-q", "enum34"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SdkUnavailable(f"cannot install {SDK_PACKAGE} from the package index: {done.stderr.strip()[-300:]}")
    marker.write_text(SDK_PACKAGE + "\n")
    return python


def tls_files(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A test CA and a certificate for `host` (an IP address or a DNS name) signed by it:
    (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pos test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([_alt_name(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def pkcs1_pem(private_key: rsa.RSAPrivateKey) -> str:
    """The SDK reads PKCS#1 private keys only."""
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()).decode()
