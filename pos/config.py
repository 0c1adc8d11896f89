"""The terminal's configuration: one TOML file, validated once, at the front door.

Every key, its default and its meaning is documented in
`config/terminal.example.toml`; `config/sandbox.toml` is a ready file for the
local sandbox gateway. Validation is done by pydantic (strict types: TOML is
typed, so "60" where 60 is meant is an error, not a guess), and every error is
turned into one line naming the file, the key, the bad value and what is
expected.

Durations are seconds as numbers (floats allowed, > 0) so tests and
`pos doctor` can shorten every interval.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from pos.core.errors import ConfigError
from pos.core.money import CURRENCY_EXPONENTS, CurrencyError, validate_cn_currencies
from pos.core.schedule import Schedule

__all__ = [
    "Config",
    "StoreSection",
    "LoadedConfig",
    "store_identity",
    "load_config",
    "check_private_file",
    "effective_config_text",
    "EXAMPLE_PATH",
]

EXAMPLE_PATH = "config/terminal.example.toml"

# Finite, at least 10 ms (a shorter interval would hammer the gateway) and at most a week:
# `inf`, `nan` and `1e308` are refused at the front door, not found in a stuck sale.
Seconds = Annotated[float, Field(ge=0.01, le=7 * 86400)]
NonNegSeconds = Annotated[float, Field(ge=0, le=3600)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class TerminalSection(_Section):
    terminal_id: str = "POS01"
    merchant_name: Annotated[str, Field(min_length=1, max_length=64)] = "My Store"
    store_name: Annotated[str, Field(max_length=64)] = ""
    state_dir: str = "/var/lib/pos"
    currency: str = "USD"
    settlement_currency: str = ""
    wallet: Literal["ALIPAY_CN", "ALIPAY_HK", "ALIPAY_PLUS"] = "ALIPAY_CN"
    language: Literal["en", "zh-CN"] = "en"
    customer_language: Literal["en", "zh-CN"] = "zh-CN"
    timezone: str = "UTC"

    @field_validator("terminal_id")
    @classmethod
    def _terminal_id(cls, v: str) -> str:
        # It becomes part of every merchantTransId (<= 64 chars, reference §6.1).
        if not (1 <= len(v) <= 16 and v.isascii() and v.isalnum()):
            raise ValueError("expected 1-16 letters or digits, e.g. 'POS01'")
        return v

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, v: str) -> str:
        if v not in CURRENCY_EXPONENTS:
            raise ValueError("expected an ISO 4217 code, one of " + ", ".join(sorted(CURRENCY_EXPONENTS)))
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as 'Asia/Singapore' or 'UTC'") from None
        return v

    @model_validator(mode="after")
    def _cn_rules(self) -> TerminalSection:
        if self.wallet == "ALIPAY_CN":
            settlement = self.settlement_currency or self.currency
            try:
                validate_cn_currencies(self.currency, settlement)
            except CurrencyError as exc:
                raise ValueError(str(exc)) from None
        return self


class StoreSection(_Section):
    """The store's identity, sent in every pay (where: pos/data/store_fields.toml) and printed on receipts.
    Alipay's onboarding gives the store id, the MCC and, for a platform, the secondary merchant id."""

    id: Annotated[str, Field(max_length=64)] = ""
    name: Annotated[str, Field(max_length=64)] = ""       # empty: [terminal] store_name, else merchant_name
    terminal_id: Annotated[str, Field(max_length=64)] = ""   # empty: [terminal] terminal_id
    secondary_merchant_id: Annotated[str, Field(max_length=64)] = ""
    mcc: Annotated[str, Field(pattern=r"^([0-9]{4})?$")] = ""   # ISO 18245 merchant category code, 4 digits
    address: Annotated[str, Field(max_length=128)] = ""


def store_identity(cfg: Config) -> dict[str, str]:
    """[store] with its fallbacks, by [store] key: what every pay carries and receipts print."""
    store, term = cfg.store, cfg.terminal
    return {"id": store.id, "name": store.name or term.store_name or term.merchant_name,
            "terminal_id": store.terminal_id or term.terminal_id,
            "secondary_merchant_id": store.secondary_merchant_id, "mcc": store.mcc, "address": store.address}


class GatewaySection(_Section):
    # "offline": Alipay's offline acquiring protocol; "ams": the v1 payments API
    # (Antom / Alipay+, README "The v1 payments API").
    protocol: Literal["offline", "ams"] = "offline"
    url: str = "https://open-sea.alipay.com"
    # Issued by Alipay; the placeholders make a config that names neither obviously unfinished.
    client_id: Annotated[str, Field(min_length=1, max_length=32)] = "CHANGE_ME"
    merchant_id: Annotated[str, Field(min_length=1, max_length=64)] = "CHANGE_ME"
    private_key: str = "/etc/pos/keys/merchant_private.pem"
    merchant_public_key: str = "/etc/pos/keys/merchant_public.pem"
    alipay_public_key: str = "/etc/pos/keys/alipay_public.pem"
    version: Literal["2.0.0", "2.0.2", "2.0.4"] = "2.0.4"
    sign_type: Literal["RSA2"] = "RSA2"
    product_code: str = "OFFLINE_PAY"
    settle_contract_id: str = ""
    # ams only: the keyVersion named in the Signature header (which of the
    # merchant's uploaded public keys signed). Client ids starting SANDBOX_ call
    # /ams/sandbox/api/..., all others /ams/api/...
    key_version: Annotated[int, Field(ge=1, le=99)] = 1
    connect_timeout: Annotated[float, Field(ge=0.01, le=60)] = 5.0
    # Also bounds a whole call: connect_timeout + read_timeout, however slowly an answer trickles in.
    read_timeout: Annotated[float, Field(ge=0.01, le=120)] = 15.0
    # A sandbox config may have its keys generated on first start; refused
    # unless the gateway URL is on this machine, so production keys are never
    # made up by accident.
    sandbox: bool = False
    # An HTTP(S) proxy the gateway is reached through, e.g. "http://proxy.example:3128" (user:password@
    # allowed). Empty: the proxy environment (HTTPS_PROXY, NO_PROXY) as it is when the daemon starts.
    # A gateway on this machine (the sandbox) is never reached through a proxy.
    proxy: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return gateway_url(v)

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str) -> str:
        return proxy_url(v) if v else v

    @model_validator(mode="after")
    def _sandbox_is_local(self) -> GatewaySection:
        if self.sandbox and not _is_loopback(urlsplit(self.url).hostname or ""):
            raise ValueError("sandbox = true is only allowed with a gateway url on 127.0.0.1")
        return self


# Alipay closes an unpaid barcode payment after 3 minutes by default (reference §12).
WALLET_AUTO_CLOSE = 180.0


class PaymentSection(_Section):
    # Seed 003 best practice: query 5-7 s apart; two more queries on
    # ORDER_NOT_EXIST; cancel at the time limit; retry cancel 3-5 times on U.
    query_first_delay: Seconds = 2.0
    # Alipay's in-store guidance: with no result after about 5 s, start querying. The
    # pay's read timeout is cut to this, and the first query goes no later than this
    # after the pay was sent (the pay is committed before it is sent, as always).
    first_query_after: Seconds = 5.0
    query_interval_min: Seconds = 5.0
    query_interval_max: Seconds = 7.0
    # Below the wallet's 3-minute automatic close, cancels included (reference §12): checked below.
    query_deadline: Seconds = 60.0
    not_found_codes: list[str] = ["ORDER_NOT_EXIST", "TARGET_NOT_FOUND"]
    not_found_retries: Annotated[int, Field(ge=0, le=10)] = 2
    cancel_retries: Annotated[int, Field(ge=1, le=10)] = 5
    cancel_interval: Seconds = 5.0
    refund_retries: Annotated[int, Field(ge=1, le=10)] = 3
    refund_interval: Seconds = 5.0
    background_interval: Seconds = 300.0
    alarm_after: Seconds = 3600.0
    scan_max_age: Seconds = 30.0
    max_amount: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")] = "100000"
    # A sale the cashier was told "No goods" for (MANUAL_REVIEW) and later found
    # paid: "refund" gives the money back at once (REVERSED); "manager" leaves it
    # PAID_LATE on the manager's list, with an alarm, until the manager refunds it
    # or records that the goods were given.
    late_success: Literal["refund", "manager"] = "refund"

    @model_validator(mode="after")
    def _ordered(self) -> PaymentSection:
        if self.query_interval_max < self.query_interval_min:
            raise ValueError("query_interval_max must be at least query_interval_min")
        cancels = (self.cancel_retries + 1) * self.cancel_interval
        if self.query_deadline + cancels >= WALLET_AUTO_CLOSE:
            raise ValueError(
                f"query_deadline = {self.query_deadline:g} s is too long: the wallet closes an unconfirmed "
                f"payment by itself after about {WALLET_AUTO_CLOSE:g} s (reference §12), and the queries plus "
                f"the cancels ((cancel_retries + 1) x cancel_interval = {cancels:g} s) must end before it; "
                f"use less than {WALLET_AUTO_CLOSE - cancels:g} (60 is Alipay's example)")
        return self

    def schedule(self) -> Schedule:
        """The engine's numbers: the engine is handed these, never this model."""
        return Schedule(
            query_first_delay=self.query_first_delay, query_interval_min=self.query_interval_min,
            query_interval_max=self.query_interval_max, query_deadline=self.query_deadline,
            not_found_retries=self.not_found_retries, cancel_retries=self.cancel_retries,
            cancel_interval=self.cancel_interval, refund_retries=self.refund_retries,
            refund_interval=self.refund_interval, background_interval=self.background_interval,
            alarm_after=self.alarm_after, scan_max_age=self.scan_max_age,
            late_success_refund=self.late_success == "refund", first_query_after=self.first_query_after,
            wallet_auto_close=WALLET_AUTO_CLOSE)


class ScannerSection(_Section):
    kind: Literal["serial", "none"] = "serial"
    url: str = "/dev/pos-scanner"
    baudrate: Annotated[int, Field(gt=0)] = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    # 1.5 stop bits exist on real UARTs; typing.Literal cannot hold a float, hence the union.
    stopbits: Literal[1, 2] | Annotated[float, Field(ge=1.5, le=1.5)] = 1
    terminator: Literal["CR", "LF", "CRLF", "ANY"] = "ANY"
    prefix: str = ""
    suffix: str = ""
    strip_aim: bool = True
    dedupe_window: NonNegSeconds = 2.0
    max_line: Annotated[int, Field(ge=16, le=4096)] = 128
    reconnect_min: Seconds = 0.5
    reconnect_max: Seconds = 10.0


class PrinterSection(_Section):
    kind: Literal["serial", "usb", "network", "file", "dummy", "none"] = "dummy"
    url: str = ""                 # serial: pyserial URL or device path
    baudrate: Annotated[int, Field(gt=0)] = 19200
    host: str = ""                # network
    port: Port = 9100
    path: str = ""                # file: a device node or file
    usb_vendor: Annotated[int, Field(ge=0, le=0xFFFF)] = 0
    usb_product: Annotated[int, Field(ge=0, le=0xFFFF)] = 0
    profile: str = "default"
    encoding: Literal["GB18030", "BIG5", "UTF-8", "ASCII"] = "GB18030"
    width: Annotated[int, Field(ge=24, le=64)] = 42
    dots: Annotated[int, Field(ge=0, le=2048)] = 0   # dots a line has; 0: from width (devices.receipt.paper_dots)
    print_qr: bool = True
    # print_qr = false: the narrowest Code 128 bar (GS w, dots) the printer takes; 1 only where its manual says so
    narrowest_bar: int = 2
    copies: Annotated[int, Field(ge=1, le=3)] = 1
    retry_interval: Seconds = 5.0


    @field_validator("narrowest_bar")
    @classmethod
    def _narrowest_bar(cls, v: int) -> int:
        if not 1 <= v <= 3:
            raise ValueError("expected 1, 2 or 3 (dots): the narrowest barcode bar (GS w) the printer takes; "
                             "2 suits most printers (Epson documents GS w as 2..6 on many models), 1 only if "
                             "the printer's manual says GS w accepts 1")
        return v


class DisplaySection(_Section):
    kind: Literal["serial", "console", "none"] = "console"
    url: str = "/dev/pos-display"
    baudrate: Annotated[int, Field(gt=0)] = 9600
    encoding: Literal["GB18030", "BIG5", "UTF-8", "ASCII"] = "GB18030"


class KeypadSection(_Section):
    kind: Literal["serial", "console", "none"] = "console"
    url: str = "/dev/pos-keypad"
    baudrate: Annotated[int, Field(gt=0)] = 9600
    # byte (as two hex digits) -> key name, for keypads that send one byte per key
    keymap: dict[str, str] = {}

    @field_validator("keymap")
    @classmethod
    def _keymap(cls, v: dict[str, str]) -> dict[str, str]:
        from devices.keypad import parse_keymap  # the key names live with the keypad driver
        parse_keymap(v)
        return v


class EcrSection(_Section):
    enabled: bool = True
    listen: str = "127.0.0.1:8765"
    token_file: str = "/etc/pos/ecr.token"
    manager_token_file: str = "/etc/pos/ecr-manager.token"
    max_wait: Annotated[float, Field(gt=0, le=60)] = 60.0

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT such as '127.0.0.1:8765'")
        if not _is_loopback(host.removeprefix("[").removesuffix("]")):
            # The till interface has no TLS: its bearer tokens would cross the network in clear.
            raise ValueError("the till interface speaks plain HTTP with bearer tokens, so it listens on loopback "
                             "only (127.0.0.1, [::1] or localhost); a till on another machine needs a TLS proxy "
                             "(such as stunnel) on this machine in front of it")
        return v


class NotifySection(_Section):
    # Where Alipay's payment notifications are received (README "Payment
    # notifications"); empty = off. Serves POST /notify/offline (notify.pay)
    # and /notify/ams/payment, /notify/ams/refund (the v1 API).
    listen: str = ""
    # The public HTTPS base URL that reaches `listen` (through the store's
    # reverse proxy or tunnel); the v1 client sends <public_url>/notify/ams/payment
    # as paymentNotifyUrl and <public_url>/notify/ams/refund as refundNotifyUrl.
    # Empty: no notify URL is sent.
    public_url: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if not v:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT such as '127.0.0.1:8766', or \"\" for off")
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("expected a base URL such as 'https://pos-17.example.com'")
        return v.rstrip("/")


class ManagerSection(_Section):
    pin_hash: str = ""

    @field_validator("pin_hash")
    @classmethod
    def _pin_hash(cls, v: str) -> str:
        if v and not _is_pin_hash(v):
            raise ValueError("expected the output of 'pos pin set' (scrypt$N$r$p$salt$hash), or empty for no PIN")
        return v
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    lockout: Seconds = 300.0
    refund_limit: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")] = "500"
    # Who the manager calls about a sale or refund that is not settled (shown with its ids).
    support_contact: Annotated[str, Field(max_length=200)] = "Alipay merchant support (see your onboarding pack)"


class MerchantSection(_Section):
    # true: the acquirer requires merchant registration before payments
    # (README "Merchant registration"): the daemon refuses sales until
    # `pos merchant register` is approved.
    registration_required: bool = False


class LogSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["kv", "json"] = "kv"


class ReconcileSection(_Section):
    """Alipay's reconciliation files over SFTP (seed 003; formats in reference §16)."""

    host: str = "isftp.alipay.com"
    port: Port = 22
    username: str = ""
    password_file: str = ""       # the password Alipay gave, alone in a file (mode 0600)
    private_key: str = ""         # or an SSH private key (mode 0600)
    host_key: Annotated[str, Field(pattern=r"^(SHA256:[A-Za-z0-9+/]{43}=?)?$")] = ""  # pinned, as ssh shows it
    remote_dir: str = "/download/{merchant_id}/{date}"
    pattern: str = "*{date}*.csv"
    archive_dir: str = ""         # empty = <state_dir>/reconcile
    store_id: str = ""            # rows with another storeId are other stores' (left out of the match)
    fetch_at: Annotated[str, Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$")] = ""  # HH:MM; empty = off
    timeout: Seconds = 30.0
    attempts: Annotated[int, Field(ge=1, le=10)] = 3

    @model_validator(mode="after")
    def _one_secret(self) -> ReconcileSection:
        if self.password_file and self.private_key:
            raise ValueError("give password_file or private_key, not both")
        return self


class HqSection(_Section):
    """Shipping the journal's events to the chain's headquarters (README "The chain"); off by default."""

    url: str = ""                 # e.g. https://hq.example.com; empty = off
    token_file: str = "/etc/pos/hq.token"   # the credential `pos hq add-terminal` printed, alone in a file (0600)
    ca_file: str = ""             # CA certificate(s) that sign headquarters' HTTPS certificate; empty = the system's
    cert_file: str = ""           # a client certificate ('pos hq add-terminal --cert') instead of token_file
    key_file: str = ""            # its private key (0600)
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 500
    interval: Seconds = 5.0       # between shipments (and heartbeats) when nothing is waiting
    backoff_max: Seconds = 300.0  # the longest wait between attempts while headquarters is unreachable
    timeout: Seconds = 10.0
    backlog_alarm: Annotated[int, Field(ge=100)] = 200_000  # events waiting before the terminal raises an alarm

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("expected a base URL such as 'https://hq.example.com', or \"\" for off")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _cert_pair(self) -> HqSection:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together: set both (the files 'pos hq add-terminal "
                             "--cert' wrote) or neither (then token_file is the credential)")
        if self.cert_file and self.url and not self.url.startswith("https://"):
            raise ValueError("a client certificate needs HTTPS: url must start with https://")
        return self


UsbId = Annotated[str, Field(pattern=r"^([0-9a-fA-F]{4})?$")]


class UdevSection(_Section):
    """USB ids for systemd/install.sh's udev rule (stable /dev/pos-* names).

    Four hex digits as text (as `lsusb` prints them), empty = no rule for
    that device. Read only by the installer and `pos doctor`; the daemon
    uses the device paths in [scanner], [display] and [printer].
    """

    scanner_vendor: UsbId = ""
    scanner_product: UsbId = ""
    display_vendor: UsbId = ""
    display_product: UsbId = ""
    printer_vendor: UsbId = ""
    printer_product: UsbId = ""

    @model_validator(mode="after")
    def _pairs(self) -> UdevSection:
        for device in ("scanner", "display", "printer"):
            vendor, product = getattr(self, f"{device}_vendor"), getattr(self, f"{device}_product")
            if bool(vendor) != bool(product):
                raise ValueError(f"{device}_vendor and {device}_product must be given together "
                                 "(both 4 hex digits, as lsusb shows them) or both left empty")
        return self


class Config(_Section):
    terminal: TerminalSection = TerminalSection()
    store: StoreSection = StoreSection()
    gateway: GatewaySection = GatewaySection()
    payment: PaymentSection = PaymentSection()
    scanner: ScannerSection = ScannerSection()
    printer: PrinterSection = PrinterSection()
    display: DisplaySection = DisplaySection()
    # The cashier's own 2x20 screen (an operator display, or the console); the
    # [display] above faces the customer. Their texts differ (catalogue sides).
    cashier_display: DisplaySection = DisplaySection(url="/dev/pos-cashier-display")
    keypad: KeypadSection = KeypadSection()
    ecr: EcrSection = EcrSection()
    notify: NotifySection = NotifySection()
    manager: ManagerSection = ManagerSection()
    merchant: MerchantSection = MerchantSection()
    log: LogSection = LogSection()
    udev: UdevSection = UdevSection()
    reconcile: ReconcileSection = ReconcileSection()
    hq: HqSection = HqSection()


# Keys whose values are secrets and are never printed.
SECRET_KEYS = {("manager", "pin_hash")}
# Keys that name files, resolved relative to the config file's folder.
PATH_KEYS = {
    ("terminal", "state_dir"),
    ("gateway", "private_key"),
    ("gateway", "merchant_public_key"),
    ("gateway", "alipay_public_key"),
    ("ecr", "token_file"),
    ("ecr", "manager_token_file"),
    ("reconcile", "password_file"),
    ("reconcile", "private_key"),
    ("reconcile", "archive_dir"),
    ("hq", "token_file"),
    ("hq", "ca_file"),
    ("hq", "cert_file"),
    ("hq", "key_file"),
}
# Files that must be private to the service user (mode 0600 or stricter).
PRIVATE_FILE_KEYS = {("gateway", "private_key"), ("ecr", "token_file"), ("ecr", "manager_token_file"),
                     ("reconcile", "password_file"), ("reconcile", "private_key"), ("hq", "token_file"),
                     ("hq", "key_file")}


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and where it came from."""

    config: Config
    path: Path
    warnings: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:  # cfg.payment etc.
        return getattr(self.config, name)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gateway_url(v: str) -> str:
    """A gateway base URL, checked as the HTTP client (requests, urllib3) will read it.

    Plain http only to a host that really is this machine: a URL the standard
    parser and urllib3 read as two different hosts (backslashes, user info,
    spaces) is refused outright, so no loopback check can be fooled.
    """
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if any(ch.isspace() or ch == "\\" or ord(ch) < 0x20 or ch == "\x7f" for ch in v):
        raise ValueError("a URL has no spaces, backslashes or control characters")
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected a base URL such as 'https://open-sea.alipay.com'")
    if "@" in parts.netloc:
        raise ValueError("a gateway URL carries no user name or password")
    try:
        client_host = parse_url(v).host or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except (LocationParseError, ValueError):
        raise ValueError("expected a base URL such as 'https://open-sea.alipay.com'") from None
    if client_host.removeprefix("[").removesuffix("]").lower() != parts.hostname.lower():
        raise ValueError(f"the HTTP client would send to {client_host!r}, not {parts.hostname!r}: fix the URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("plain http is only allowed to this machine (127.0.0.1); use https")
    return v.rstrip("/")


def proxy_url(v: str) -> str:
    """A proxy URL, checked as the HTTP client (urllib3) will read it."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    example = "expected a proxy URL such as 'http://proxy.example:3128'"
    if any(ch.isspace() or ch == "\\" or ord(ch) < 0x20 or ch == "\x7f" for ch in v):
        raise ValueError("a URL has no spaces, backslashes or control characters")
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(example)
    try:
        client_host = parse_url(v).host or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except (LocationParseError, ValueError):
        raise ValueError(example) from None
    if client_host.removeprefix("[").removesuffix("]").lower() != parts.hostname.lower():
        raise ValueError(f"the HTTP client would use the proxy {client_host!r}, not {parts.hostname!r}: fix the URL")
    return v.rstrip("/")


def _is_pin_hash(v: str) -> bool:
    """The shape pos/terminal/pin.py writes: scrypt$N$r$p$salt$hash, with costs a POS box can pay."""
    import base64
    import binascii

    fields = v.split("$")
    if len(fields) != 6 or fields[0] != "scrypt" or not all(f.isascii() and f.isdigit() for f in fields[1:4]):
        return False
    n, r, p = (int(f) for f in fields[1:4])
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    try:
        salt = base64.b64decode(fields[4], validate=True)
        digest = base64.b64decode(fields[5], validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(salt) >= 8 and len(digest) >= 16


def check_private_file(path: Path, where: str) -> None:
    """Refuse a secret file that the group or others can read."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{where}: {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"it holds a secret: run 'chmod 600 {path}'")


def _describe(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"is not a known key: check the spelling against {EXAMPLE_PATH}"
    if kind in ("greater_than",):
        return f"expected a number above {ctx.get('gt')}"
    if kind in ("greater_than_equal",):
        return f"expected a number of at least {ctx.get('ge')}"
    if kind in ("less_than_equal",):
        return f"expected a number of at most {ctx.get('le')}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}"
    if kind in ("float_type", "int_type", "float_parsing", "int_parsing"):
        if kind.startswith("float"):
            return "expected a number (without quotes)"
        return "expected a whole number (without quotes)"
    if kind == "string_type":
        return "expected text in quotes"
    if kind == "bool_type":
        return "expected true or false"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx.get('pattern')}"
    if kind in ("string_too_long", "string_too_short"):
        return f"expected text of {ctx.get('min_length', 1)}-{ctx.get('max_length', '...')} characters"
    if kind == "model_type" or kind == "dict_type":
        return "expected a [section] table"
    if kind == "list_type":
        return "expected a list such as [\"A\", \"B\"]"
    msg = str(err.get("msg", "is invalid"))
    return msg.removeprefix("Value error, ").replace("Input should be", "expected")


def format_error(path: Path, err: ErrorDetails, data: dict[str, Any]) -> str:
    """One validation error as the technician reads it: file, [section] key, value given, what is wrong.

    Shared by every TOML file the terminal reads (config, store file), so each says it the same way.
    """
    loc = [str(p) for p in err["loc"]]
    if not loc:
        return f"{path}: {_describe(err)}"
    section, key = loc[0], ".".join(loc[1:])
    where = f"[{section}] {key}" if key else f"[{section}]"
    if err["type"] == "missing" or (not key and err["type"] == "value_error") or (section, key) in SECRET_KEYS:
        return f"{path}: {where}: {_describe(err)}"
    return f"{path}: {where} = {toml_value(err.get('input'))}: {_describe(err)}"


def load_config(path: str | os.PathLike[str], *, require_keys: bool = False) -> LoadedConfig:
    """Read and validate one TOML file.

    With require_keys, key and token files must exist (the daemon needs them);
    otherwise a missing file is a warning, since a technician checks a config
    before the keys are installed. A secret file that exists but is readable
    by group or others is always refused.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file: give the path of a config file, e.g. {EXAMPLE_PATH}") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{p}: cannot be read by this user: check its owner and mode") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{p}: is nested too deeply to be a config file: see {EXAMPLE_PATH}") from None
    try:
        cfg = Config.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{p}: is nested too deeply to be a config file: see {EXAMPLE_PATH}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(format_error(p, first, data)) from None
    try:
        cfg = _resolve_paths(cfg, p.parent)
        warnings = _check_files(cfg, p, require_keys=require_keys)
    except OSError as exc:  # a path the system cannot use at all (too long, say)
        name = exc.filename if isinstance(exc.filename, str) else ""
        raise ConfigError(f"{p}: a file name in it cannot be used ({exc.strerror}): "
                          f"{name[:80]}{'...' if len(name) > 80 else ''}: check the paths in the file") from None
    return LoadedConfig(cfg, p, warnings)


def _resolve_paths(cfg: Config, base: Path) -> Config:
    updates: dict[str, dict[str, Any]] = {}
    for section, key in PATH_KEYS:
        value = getattr(getattr(cfg, section), key)
        if value:
            expanded = Path(os.path.expanduser(value))
            if not expanded.is_absolute():
                expanded = (base / expanded).resolve()
            updates.setdefault(section, {})[key] = str(expanded)
    new_sections = {
        name: getattr(cfg, name).model_copy(update=vals) for name, vals in updates.items()
    }
    return cfg.model_copy(update=new_sections)


def _check_files(cfg: Config, path: Path, *, require_keys: bool) -> list[str]:
    warnings: list[str] = []
    files = [("gateway", "private_key"), ("gateway", "merchant_public_key"), ("gateway", "alipay_public_key")]
    if cfg.ecr.enabled:
        files += [("ecr", "token_file"), ("ecr", "manager_token_file")]
    files += [("reconcile", k) for k in ("password_file", "private_key") if getattr(cfg.reconcile, k)]
    if cfg.hq.url:
        files += [("hq", "cert_file"), ("hq", "key_file")] if cfg.hq.cert_file else [("hq", "token_file")]
    for section, key in files:
        fpath = Path(getattr(getattr(cfg, section), key))
        where = f"{path}: [{section}] {key}"
        if not fpath.exists():
            generated = (cfg.gateway.sandbox and section != "hq") or section == "ecr"
            if require_keys and not generated:
                what = ("copy the file 'pos hq add-terminal --cert' wrote (the key mode 0600)"
                        if section == "hq" and key != "token_file"
                        else "put the credential 'pos hq add-terminal' printed in it (mode 0600)" if section == "hq"
                        else "install it, or run 'pos keys generate DIR' for a sandbox")
                raise ConfigError(f"{where} = '{fpath}': file not found: {what}")
            note = "will be generated at first start" if generated else "not found yet: install it before 'pos run'"
            warnings.append(f"{where} = '{fpath}': {note}")
            continue
        if not fpath.is_file():
            raise ConfigError(f"{where} = '{fpath}': is not a file")
        if (section, key) in PRIVATE_FILE_KEYS:
            check_private_file(fpath, where)
    return warnings


def effective_config_text(cfg: Config) -> str:
    """The whole effective configuration as TOML, secrets masked."""
    lines: list[str] = []
    for section in Config.model_fields:
        lines.append(f"[{section}]")
        values = getattr(cfg, section).model_dump()
        for key, value in values.items():
            if (section, key) in SECRET_KEYS and value:
                value = "********"
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    """A value written back as TOML (in error messages, `config show` and generated configs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"
    return repr(value)
