"""Client certificates for terminals: headquarters' own CA issues one per terminal.

`pos hq init-ca DIR` makes the CA (DIR/terminals-ca.pem and its key
DIR/terminals-ca.key, 0600); `pos hq add-terminal ID --store S --cert DIR`
issues ID's certificate and key (DIR/ID.pem, DIR/ID.key, 0600) signed by it,
and headquarters records the certificate's SHA-256 fingerprint.
`pos hq serve --client-ca DIR/terminals-ca.pem` makes TLS verify every
certificate a terminal presents against that CA; the fingerprint then names
the terminal (so revoking the terminal refuses its certificate, with no
revocation list to publish).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pos.core.errors import EXIT_CONFIG, UserError

__all__ = ["CA_CERT", "CA_KEY", "IssuedCert", "init_ca", "issue_terminal_cert"]

CA_CERT = "terminals-ca.pem"
CA_KEY = "terminals-ca.key"
CA_YEARS = 20
CERT_YEARS = 5


class IssuedCert:
    def __init__(self, cert_path: Path, key_path: Path, sha256: str) -> None:
        self.cert_path, self.key_path, self.sha256 = cert_path, key_path, sha256


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def init_ca(folder: Path, *, name: str = "pos-terminal headquarters: terminals") -> Path:
    """Create the terminals' CA in `folder`; returns the CA certificate's path. Never overwrites."""
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    if cert_path.exists() or key_path.exists():
        raise UserError(f"{folder} already holds a terminals' CA ({CA_CERT}, {CA_KEY}): keep it, or move it "
                        "away first (every certificate it issued stops working)", exit_code=EXIT_CONFIG)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {folder}: {exc.strerror}", exit_code=EXIT_CONFIG) from None
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    try:
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise UserError(f"cannot write the CA into {folder}: {exc.strerror}", exit_code=EXIT_CONFIG) from None
    return cert_path


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise UserError(f"no terminals' CA in {folder} ({Path(str(exc.filename)).name} is missing): "
                        "run 'pos hq init-ca' first, or give --ca-dir", exit_code=EXIT_CONFIG) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the terminals' CA in {folder}: {exc}", exit_code=EXIT_CONFIG) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UserError(f"{key_path}: not the key 'pos hq init-ca' wrote", exit_code=EXIT_CONFIG)
    return cert, key


def issue_terminal_cert(ca_folder: Path, out_folder: Path, terminal_id: str, store_id: str) -> IssuedCert:
    """A client certificate for `terminal_id` (CN) and its key (0600), written into `out_folder`."""
    ca_cert, ca_key = _load_ca(ca_folder)
    cert_path, key_path = out_folder / f"{terminal_id}.pem", out_folder / f"{terminal_id}.key"
    if cert_path.exists() or key_path.exists():
        raise UserError(f"{cert_path} or {key_path} already exists: move the old files away first",
                        exit_code=EXIT_CONFIG)
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, terminal_id),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, store_id)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=365 * CERT_YEARS), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    try:
        out_folder.mkdir(parents=True, exist_ok=True)
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise UserError(f"cannot write the certificate into {out_folder}: {exc.strerror}",
                        exit_code=EXIT_CONFIG) from None
    return IssuedCert(cert_path, key_path, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())
