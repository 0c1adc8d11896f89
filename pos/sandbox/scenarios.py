"""Scripted outcomes of the sandbox gateway, chosen by the payment code (like a card network's test cards).

A test code is 18 digits: "28" + two scenario digits + 14 free digits, so a
test can make many distinct single-use codes for one scenario
(`make_code("10")`). Any other valid code (§15) behaves like scenario 00.
The table is README's "Gateway and sandbox" section.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["SandboxOptions", "Scenario", "SCENARIOS", "scenario_for", "make_code", "CANCEL_WINDOWS"]

CANCEL_WINDOWS = ("beijing_day", "24h")


@dataclass(frozen=True)
class SandboxOptions:
    """Every timing and rule of the sandbox that a test or a demo may want to change."""

    wallet_confirm_after: float = 3.0     # scenario 10: seconds until the customer confirms
    slow_response: float = 20.0           # 11, 12, 99: the answer is held longer than any client read timeout
    query_errors: int = 2                 # 13: payQuery answers SYSTEM_ERROR this many times first
    cancel_errors: int = 2                # 14: payCancel answers U this many times first
    late_success_after: float = 90.0      # 17: past the client's 60 s query deadline (payment.query_deadline)
    refund_settles_after: float = 5.0     # 20: a refund answers REFUND_IN_PROCESS this long, then succeeds
    race_delay: float = 3.0               # 99: the pay reaches the ledger this long after it was sent
    # §13: the sources disagree; "beijing_day" (same GMT+8 day + 15 min buffer) is the strictest.
    cancel_window: Literal["beijing_day", "24h"] = "beijing_day"
    cancel_buffer: float = 15 * 60.0
    refund_window_days: int = 365         # §13: "[?] usually 12 months"
    not_found_code: str = "ORDER_NOT_EXIST"   # §7.2 / seed 003 (a sister gateway says TARGET_NOT_FOUND)
    tolerate_double_base64: bool = True   # §4.3: the docs' sample signature is base64 twice
    compare_identity_code: bool = False   # §14 [?]: is the code part of the pay repeat check?
    max_body: int = 64 * 1024             # larger requests are refused unread
    file_product_code: str = "GlobalOfflineAcquire"  # §16.1 productCode column [?] (inference)
    user_site: str = "ALIPAY_CN"
    fee_basis_points: int = 180           # reconciliation files: Alipay's fee on a payment (1.80 %), minor units
    # ALIPAY_CN customers pay in CNY: payAmount in CNY at these rates (CNY per unit of the order's
    # currency) with conversionRate; an order currency not listed is paid as it is.
    cny_rates: tuple[tuple[str, str], ...] = (("SGD", "5.3696"), ("USD", "7.1100"), ("HKD", "0.9120"),
                                              ("EUR", "7.7400"), ("JPY", "0.0475"))
    # Refuse a pay without the store identity pos/data/store_fields.toml lists as
    # required (storeId, storeName, the terminal): Alipay's go-live checks look for it.
    require_store: bool = False
    # The order code's (merchant-presented QR's) expireTime, seconds after the pay: unpaid by then, the
    # payment closes (inquiryPayment FAIL, ORDER_IS_CLOSED) and the cashier page refuses to pay it.
    order_code_expiry: float = 300.0

    def __post_init__(self) -> None:
        if self.cancel_window not in CANCEL_WINDOWS:
            raise ValueError(f"cancel_window must be one of {CANCEL_WINDOWS}, not {self.cancel_window!r}")
        for name in ("wallet_confirm_after", "slow_response", "late_success_after", "race_delay",
                     "cancel_buffer"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more seconds")
        if self.order_code_expiry <= 0:
            raise ValueError("order_code_expiry must be more than 0 seconds")
        if self.query_errors < 0 or self.cancel_errors < 0:
            raise ValueError("query_errors and cancel_errors must be 0 or more")


@dataclass(frozen=True)
class Scenario:
    number: str
    title: str
    decline: str | None = None          # F code answered to pay; nothing charged
    pay_status: Literal["S", "U"] = "S"
    charge: bool = True                 # a payment is recorded (SUCCESS or PROCESSING)
    settles_after: str | None = None    # name of the SandboxOptions delay until PROCESSING -> SUCCESS
    settled: bool = True                # SUCCESS at once (else PROCESSING)
    hold: bool = False                  # the answer is held `slow_response` s (client times out)
    record: bool = True                 # False: the pay is never created
    query_errors: bool = False          # 13
    cancel_errors: bool = False         # 14
    cancel_allowed: bool = True         # 15: False
    cancel_expired: bool = False        # 19: payCancel answers CANCEL_EXPIRED (the same-day window has passed)
    corrupt_signature: bool = False     # 16
    race: bool = False                  # 99: the pay reaches the ledger `race_delay` s late
    refund_processing: bool = False     # 20: its refunds stay in process `refund_settles_after` s


_LIST = [
    Scenario("00", "success at once"),
    Scenario("01", "decline: balance not enough", decline="USER_BALANCE_NOT_ENOUGH", charge=False),
    Scenario("02", "decline: risk reject", decline="RISK_REJECT", charge=False),
    Scenario("03", "decline: expired code", decline="EXPIRED_CODE", charge=False),
    Scenario("04", "decline: invalid code", decline="INVALID_CODE", charge=False),
    Scenario("05", "decline: code already used", decline="AUTH_CODE_ALREADY_USED", charge=False),
    Scenario("10", "customer confirms in the wallet", pay_status="U", settled=False,
             settles_after="wallet_confirm_after"),
    Scenario("11", "pay times out, charged anyway", hold=True),
    Scenario("12", "pay times out, never created", hold=True, record=False, charge=False),
    Scenario("13", "pay U, charged; queries fail first", pay_status="U", query_errors=True),
    Scenario("14", "pay U, stays processing; cancel U first, then S", pay_status="U", settled=False,
             cancel_errors=True),
    Scenario("15", "pay U, stays processing; cancel not allowed", pay_status="U", settled=False,
             cancel_allowed=False),
    Scenario("16", "pay charged, answer's signature is bad", corrupt_signature=True),
    Scenario("17", "success after the client gave up", pay_status="U", settled=False,
             settles_after="late_success_after"),
    Scenario("18", "pay U, stays processing; cancel S", pay_status="U", settled=False),
    Scenario("19", "pay U, customer confirms late; cancel too late (CANCEL_EXPIRED)", pay_status="U",
             settled=False, settles_after="late_success_after", cancel_expired=True),
    Scenario("20", "paid; each refund stays in process, then succeeds (notifyRefund)", refund_processing=True),
    Scenario("99", "query overtakes the pay (ORDER_NOT_EXIST race)", hold=True, race=True),
]
SCENARIOS: dict[str, Scenario] = {s.number: s for s in _LIST}

_TEST_CODE = re.compile(r"28(\d\d)\d{14}")


def scenario_for(code: str) -> Scenario:
    """The scripted behaviour of a (valid) payment code."""
    match = _TEST_CODE.fullmatch(code)
    if match and match.group(1) in SCENARIOS:
        return SCENARIOS[match.group(1)]
    return SCENARIOS["00"]


_serials = itertools.count(random.SystemRandom().randrange(10**12))


def make_code(scenario: str | int = "00", serial: int | None = None) -> str:
    """A fresh 18-digit test code for `scenario` ("28" + NN + 14 digits); distinct on every call."""
    number = f"{int(scenario):02d}"
    if number not in SCENARIOS:
        raise ValueError(f"no sandbox scenario {number}; known: {', '.join(SCENARIOS)}")
    n = next(_serials) if serial is None else serial
    return f"28{number}{n % 10**14:014d}"
