"""Key files for the gateway: generating a sandbox set and filling in missing ones.

A key folder holds four PEM files: the merchant's pair (the terminal signs with
merchant_private.pem; Alipay holds merchant_public.pem) and, for the local
sandbox only, the gateway's pair (the sandbox signs with alipay_private.pem; the
terminal verifies with alipay_public.pem). Private files are created 0600 and
never overwritten unless asked.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pos.core.errors import UserError
from pos.gateway.signing import (
    generate_keypair,
    load_private_key,
    private_key_pem,
    public_key_pem,
)

__all__ = [
    "MERCHANT_PRIVATE", "MERCHANT_PUBLIC", "ALIPAY_PRIVATE", "ALIPAY_PUBLIC", "KEY_FILES", "credential_problems",
    "generate_key_folder", "ensure_sandbox_keys", "sandbox_signing_key_path",
]

MERCHANT_PRIVATE = "merchant_private.pem"
MERCHANT_PUBLIC = "merchant_public.pem"
ALIPAY_PRIVATE = "alipay_private.pem"   # the sandbox's signing key; never exists on a production terminal
ALIPAY_PUBLIC = "alipay_public.pem"
KEY_FILES = (MERCHANT_PRIVATE, MERCHANT_PUBLIC, ALIPAY_PRIVATE, ALIPAY_PUBLIC)


def _write(path: Path, data: bytes, *, private: bool, replace: bool) -> None:
    """Write a key file; private ones are 0600 from the first byte (no window where others can read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_pair(private_path: Path, public_path: Path, *, replace: bool) -> None:
    private, public = generate_keypair()
    _write(private_path, private_key_pem(private), private=True, replace=replace)
    _write(public_path, public_key_pem(public), private=False, replace=replace)


def generate_key_folder(folder: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Create the four key files in `folder`; refuse to overwrite any unless force. Returns the paths."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: is a file, not a folder: give a folder for the key files")
    paths = [target / name for name in KEY_FILES]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise UserError(f"{target}: already holds {names}: keep them, or pass --force to replace all four "
                        "(a replaced merchant key must be uploaded to Alipay again)")
    try:
        _write_pair(target / MERCHANT_PRIVATE, target / MERCHANT_PUBLIC, replace=force)
        _write_pair(target / ALIPAY_PRIVATE, target / ALIPAY_PUBLIC, replace=force)
    except PermissionError:
        raise UserError(f"{target}: cannot write here as this user: choose another folder or fix its owner") from None
    return paths


def sandbox_signing_key_path(cfg: Any) -> Path:
    """Where the sandbox's own private key lives: beside the configured alipay_public_key."""
    return Path(cfg.gateway.alipay_public_key).parent / ALIPAY_PRIVATE


def _ensure_pair(private_path: Path, public_path: Path) -> list[Path]:
    if private_path.exists() and public_path.exists():
        return []
    if private_path.exists():  # derive the missing public half
        key = load_private_key(private_path)
        _write(public_path, public_key_pem(key.public_key()), private=False, replace=False)
        return [public_path]
    if public_path.exists():
        raise UserError(f"{public_path} exists but its private key {private_path} does not: "
                        "remove the public key to have a new pair generated")
    _write_pair(private_path, public_path, replace=False)
    return [private_path, public_path]


def ensure_sandbox_keys(cfg: Any) -> list[Path]:
    """For a sandbox config (gateway.sandbox = true), create missing key files. Returns those created.

    Does nothing when sandbox is false: production keys are installed, never made up.
    """
    gw = cfg.gateway
    if not gw.sandbox:
        return []
    created = _ensure_pair(Path(gw.private_key), Path(gw.merchant_public_key))
    created += _ensure_pair(sandbox_signing_key_path(cfg), Path(gw.alipay_public_key))
    return created


# The sandbox's ids (config/sandbox.toml and the [gateway] defaults): never valid in production.
SANDBOX_CLIENT_PREFIX = "SANDBOX_"
SANDBOX_MERCHANT_IDS = frozenset({"2188000000000001"})
PLACEHOLDER = "CHANGE_ME"   # the [gateway] defaults: neither a sandbox nor a production id
_CHANGE = ("seed 003 lists what Alipay issues for production: the Client ID, the RSA2 keys "
           "(yours uploaded, Alipay's installed) and the Merchant ID")


def credential_problems(cfg: Any) -> list[str]:
    """Sandbox credentials against a production gateway URL, or production ones against the local
    sandbox: each problem names what to change. `pos config check`, `pos run` and `pos doctor` refuse them."""
    from urllib.parse import urlsplit

    gw = cfg.gateway
    host = urlsplit(gw.url).hostname or ""
    local = host == "localhost" or host.startswith("127.") or host == "::1"
    problems: list[str] = []
    if not local:
        if gw.client_id.startswith(SANDBOX_CLIENT_PREFIX):
            problems.append(f"[gateway] client_id = {gw.client_id!r} is a sandbox id but url = {gw.url} is a "
                            f"production gateway: set client_id to the Client ID Alipay issued ({_CHANGE})")
        if gw.merchant_id in SANDBOX_MERCHANT_IDS:
            problems.append(f"[gateway] merchant_id = {gw.merchant_id!r} is the sandbox's example but url = "
                            f"{gw.url} is a production gateway: set merchant_id to your Merchant ID ({_CHANGE})")
        made_up = sandbox_signing_key_path(cfg)
        if made_up.exists():
            problems.append(f"[gateway] alipay_public_key = {gw.alipay_public_key} was made by the sandbox "
                            f"({made_up.name} is beside it; Alipay never hands out its private key) but url = "
                            f"{gw.url} is a production gateway: install Alipay's public key from the developer "
                            f"portal in a folder of its own, and your merchant keys ({_CHANGE})")
    elif gw.sandbox and not gw.client_id.startswith(SANDBOX_CLIENT_PREFIX) and gw.client_id != PLACEHOLDER:
        problems.append(f"[gateway] client_id = {gw.client_id!r} looks like a production Client ID but url = "
                        f"{gw.url} is the local sandbox: keep production credentials off test set-ups; "
                        f"use a client_id starting {SANDBOX_CLIENT_PREFIX} (e.g. SANDBOX_CLIENT)")
    return problems
