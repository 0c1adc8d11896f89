"""The store's registration file (`pos merchant register --file store.toml`).

A TOML file the technician fills in once per store; validated key by key like
the terminal's config (one sentence naming the key, its value and what is
expected), then turned into the v1 `registration` request body. The example
is config/store.example.toml. README "Merchant registration" says which
request fields are confirmed in Antom's reference and which are our reading.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pos.config import format_error
from pos.core.errors import ConfigError

__all__ = ["StoreFile", "load_store_file", "registration_body", "STORE_EXAMPLE"]

STORE_EXAMPLE = "config/store.example.toml"

Text64 = Annotated[str, Field(min_length=1, max_length=64)]
Region = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
MCC = Annotated[str, Field(pattern=r"^[0-9]{4}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MerchantPart(_Section):
    reference_merchant_id: Text64                 # the merchant's id at the acquirer (unique)
    display_name: Text64                          # shown to customers in the wallet
    mcc: MCC                                      # merchant category code, 4 digits
    legal_name: Annotated[str, Field(min_length=1, max_length=256)]
    registration_type: Text64 = "ENTERPRISE_REGISTRATION_NO"
    registration_no: Text64
    region: Region                                # ISO 3166 two-letter code
    city: Text64
    address: Annotated[str, Field(min_length=1, max_length=256)]
    zip_code: Annotated[str, Field(max_length=32)] = ""
    website: Annotated[str, Field(max_length=2048, pattern=r"^(https?://\S+)?$")] = ""


class StorePart(_Section):
    reference_store_id: Annotated[str, Field(min_length=1, max_length=32)]
    name: Text64
    mcc: MCC
    region: Region
    city: Text64
    address: Annotated[str, Field(min_length=1, max_length=256)]
    zip_code: Annotated[str, Field(max_length=32)] = ""


class StoreFile(_Section):
    merchant: MerchantPart
    store: StorePart


def load_store_file(path: str | Path) -> StoreFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file: copy {STORE_EXAMPLE} and fill it in") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read as UTF-8 text ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: is not valid TOML: {exc}") from None
    try:
        return StoreFile.model_validate(data)
    except ValidationError as exc:
        message = format_error(p, exc.errors()[0], data)
        raise ConfigError(message.replace("terminal.example.toml", "store.example.toml")) from None


def _address(region: str, city: str, address: str, zip_code: str) -> dict[str, str]:
    out = {"region": region, "city": city, "address1": address}
    if zip_code:
        out["zipCode"] = zip_code
    return out


def registration_body(store: StoreFile) -> dict[str, Any]:
    """The registration request without its registrationRequestId (the journal adds it)."""
    m, s = store.merchant, store.store
    detail: dict[str, Any] = {
        "legalName": m.legal_name, "registrationType": m.registration_type, "registrationNo": m.registration_no,
        "registrationAddress": _address(m.region, m.city, m.address, m.zip_code),
    }
    if m.website:
        detail["websites"] = [{"url": m.website}]
    return {
        "merchantInfo": {"referenceMerchantId": m.reference_merchant_id, "merchantDisplayName": m.display_name,
                         "merchantMCC": m.mcc, "registrationDetail": detail},
        "productCodes": ["IN_STORE_PAYMENT"],
        "storeInfo": {"referenceStoreId": s.reference_store_id, "storeName": s.name, "storeMCC": s.mcc,
                      "storeAddress": _address(s.region, s.city, s.address, s.zip_code)},
    }
