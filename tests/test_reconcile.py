"""Reconciliation: Alipay's files parsed exactly and matched against the journal's records (pure)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from pos.core.money import Money
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.reconcile.match import ADVICE, Class, reconcile
from pos.reconcile.parse import FileError, parse_file, to_minor
from pos.reconcile.report import printer_lines, render_csv, render_text
from pos.sandbox.ledger import HK_COLUMNS, SETTLEMENT_DETAIL_COLUMNS, TRANSACTION_DETAIL_COLUMNS, Ledger
from pos.sandbox.scenarios import make_code

BJ = timezone(timedelta(hours=8))
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=BJ)
DAY = date(2024, 5, 1)
MID = "2188000000000001"


def csv_text(columns: list[str], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------ exact amounts

@pytest.mark.parametrize("text, currency, minor", [
    ("73.00", "USD", 7300), ("0.1", "USD", 10), ("0.07", "USD", 7), ("1250", "JPY", 1250),
    ("1250.00", "JPY", 1250), ("99999999999999.99", "USD", 9999999999999999), ("+0.00", "CNY", 0),
])
def test_decimal_major_units_convert_exactly(text: str, currency: str, minor: int) -> None:
    assert to_minor(text, currency, signed=True) == minor


@pytest.mark.parametrize("text, currency, words", [
    ("12.345", "USD", "more decimals"), ("12.5", "JPY", "more decimals"), ("1e3", "USD", "not a decimal"),
    ("", "USD", "empty"), ("-1.00", "USD", "negative"), ("1,00", "EUR", "not a decimal"), ("NaN", "USD", "not"),
])
def test_inexact_or_malformed_amounts_are_refused(text: str, currency: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        to_minor(text, currency)


def test_signed_amounts_where_the_format_has_them() -> None:
    assert to_minor("-0.73", "CNY", signed=True) == -73
    assert to_minor("-7.23", "CNY", signed=True) == -723


# ------------------------------------------------------------------ a day at the sandbox

class Day:
    """A day at the sandbox ledger and the journal records the terminal would have for it."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.sales: list[SaleRecord] = []
        self.refunds: list[RefundRecord] = []
        self.n = 0

    def _sale(self, mtid: str, amount: Money, state: SaleState, acq: str | None) -> SaleRecord:
        self.n += 1
        sale = SaleRecord(sale_id=self.n, merchant_trans_id=mtid, amount=amount, code_masked="****1234",
                          order_title="", reference="", state=state, created_at=0.0, updated_at=0.0,
                          local_date="2024-05-01", scanned_at=0.0, acquirement_id=acq)
        self.sales.append(sale)
        return sale

    def pay(self, minor: int, currency: str = "USD", state: SaleState = SaleState.PAID) -> SaleRecord:
        mtid = f"POS01-20240501-TEST01-{self.n + 1:06d}"
        reply = self.ledger.pay(MID, mtid, make_code("00"), Money(minor, currency), "", NOW)
        assert reply.status == "S"
        return self._sale(mtid, Money(minor, currency), state, reply.body["acquirementId"])

    def cancel(self, sale: SaleRecord) -> SaleRecord:
        assert self.ledger.cancel(MID, NOW, merchant_trans_id=sale.merchant_trans_id).status == "S"
        new = replace(sale, state=SaleState.CANCELLED)
        self.sales[self.sales.index(sale)] = new
        return new

    def refund(self, sale: SaleRecord, minor: int, state: RefundState = RefundState.REFUNDED) -> RefundRecord:
        rid = f"{sale.merchant_trans_id}-R{len(self.refunds) + 1}"
        assert sale.acquirement_id
        reply = self.ledger.refund(MID, sale.acquirement_id, rid, Money(minor, sale.amount.currency), "", NOW)
        assert reply.status == "S", reply
        rec = RefundRecord(refund_id=len(self.refunds) + 1, sale_id=sale.sale_id, merchant_refund_id=rid,
                           acquirement_id=sale.acquirement_id, amount=Money(minor, sale.amount.currency),
                           reason="", state=state, created_at=0.0, updated_at=0.0, local_date="2024-05-01")
        self.refunds.append(rec)
        return rec

    def files(self) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        return self.ledger.transaction_rows(DAY, NOW), self.ledger.settlement_rows(DAY, NOW)

    def match(self, tx: list[dict[str, str]] | None = None, st: list[dict[str, str]] | None = None):
        t, s = self.files()
        tx = t if tx is None else tx
        st = s if st is None else st
        ptx = parse_file("ALIPAY_TRANSACTION_DETAIL_USD_20240501.csv", csv_text(TRANSACTION_DETAIL_COLUMNS, tx))
        pst = parse_file("ALIPAY_SETTLEMENT_DETAIL_USD_20240501.csv", csv_text(SETTLEMENT_DETAIL_COLUMNS, st))
        assert (ptx.role, pst.role) == ("transaction", "settlement")
        return reconcile("2024-05-01", ptx.rows, pst.rows, self.sales, self.refunds)


@pytest.fixture
def day() -> Day:
    d = Day()
    a = d.pay(1250)
    d.pay(999)
    d.pay(5000, "JPY")
    c = d.pay(700)
    d.cancel(c)
    d.refund(a, 250)
    return d


def classes(rec) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in rec.items:
        out.setdefault(i.cls.value, []).append(i.merchant_trans_id)
    return out


def test_a_clean_day_matches_everything_with_fees_and_settlement(day: Day) -> None:
    rec = day.match()
    assert rec.all_matched, render_text(rec)
    usd, jpy = rec.totals["USD"], rec.totals["JPY"]
    assert usd.counts["matched"] == 3 and usd.counts["cancelled"] == 1   # 2 payments + 1 refund; 1 cancel
    assert usd.paid == 1250 + 999 and usd.refunded == 250
    # fee 1.80 % rounded half up: 1250 -> 23 (22.5), 999 -> 18 (17.98); the cancelled payment is not settled
    assert usd.fees == 23 + 18
    assert usd.settled == (1250 - 23) + (999 - 18) - 250
    assert jpy.paid == 5000 and jpy.fees == 90 and jpy.settled == 4910
    text = render_text(rec)
    assert "Everything matches." in text and "net settlement" in text and "22.09 USD" not in text


def test_deleted_altered_and_added_rows_on_alipays_side(day: Day) -> None:
    tx, st = day.files()
    payments = [r for r in tx if r["transType"] == "PAYMENT" and r["orderCurrency"] == "USD"]
    refund = next(r for r in tx if r["transType"] == "REFUND")
    altered = dict(payments[1], orderAmount="9.90")
    added = dict(payments[0], merchantTransId="POS09-20240501-OTHER-000001", acquirementId="2024X")
    rows = [r for r in tx if r not in (payments[0], payments[1], refund)] + [altered, added]
    rec = day.match(rows, st)
    by = {i.merchant_trans_id: i for i in rec.items}
    missing = by[payments[0]["merchantTransId"]]
    assert missing.cls == Class.OURS_ONLY and missing.where == "journal"
    assert missing.advice == ADVICE["ours_only.payment"] and "next day's file" in missing.advice
    wrong = by[payments[1]["merchantTransId"]]
    assert wrong.cls == Class.MISMATCH and wrong.ours == Money(999, "USD") and wrong.theirs == Money(990, "USD")
    assert "line" in wrong.where and "merchant portal" in wrong.advice
    extra = by["POS09-20240501-OTHER-000001"]
    assert extra.cls == Class.ALIPAY_ONLY and extra.advice_key == "alipay_only.payment"
    lost_refund = by[refund["merchantTransId"]]
    assert lost_refund.cls == Class.OURS_ONLY and lost_refund.advice_key == "ours_only.refund"
    assert not rec.all_matched and len(rec.problems) == 4
    text = render_text(rec)
    assert "4 item(s) need attention" in text and text.count("what to do:") == 4


def test_deleted_altered_and_added_items_on_our_side(day: Day) -> None:
    paid = [s for s in day.sales if s.state == SaleState.PAID and s.amount.currency == "USD"]
    day.sales.remove(paid[1])                                          # journal lost a payment
    day.sales[day.sales.index(paid[0])] = replace(paid[0], amount=Money(1300, "USD"))
    cancelled = next(s for s in day.sales if s.state == SaleState.CANCELLED)
    day.sales[day.sales.index(cancelled)] = replace(cancelled, state=SaleState.PAID)  # cancel not recorded
    day.sales.append(replace(paid[0], sale_id=99, merchant_trans_id="POS01-20240501-TEST01-000099",
                             acquirement_id="X99"))                    # a sale Alipay never saw
    rec = day.match()
    c = classes(rec)
    assert c["alipay_only"] == [paid[1].merchant_trans_id]
    assert c["mismatch"] == [paid[0].merchant_trans_id]
    assert sorted(c["ours_only"]) == sorted([cancelled.merchant_trans_id, "POS01-20240501-TEST01-000099"])
    by = {i.merchant_trans_id: i for i in rec.items}
    assert by[cancelled.merchant_trans_id].advice_key == "ours_only.cancel_missing"
    assert by["POS01-20240501-TEST01-000099"].advice_key == "ours_only.payment"


def test_states_that_disagree_get_their_own_advice() -> None:
    d = Day()
    declined = d.pay(100, state=SaleState.DECLINED)       # the terminal showed declined, Alipay charged
    cancelled = d.pay(200, state=SaleState.CANCELLED)     # the terminal cancelled, Alipay has no cancel
    review = d.pay(300, state=SaleState.MANUAL_REVIEW)
    paid = d.pay(400)
    pending = d.refund(paid, 50, RefundState.REFUND_PENDING)
    reversed_sale = d.pay(500)
    d.cancel(reversed_sale)
    d.sales[-1] = replace(d.sales[-1], state="REVERSED")  # type: ignore[arg-type]
    rec = d.match()
    by = {i.merchant_trans_id: i for i in rec.items}
    assert by[declined.merchant_trans_id].advice_key == "alipay_only.declined"
    assert by[cancelled.merchant_trans_id].advice_key == "alipay_only.cancelled"
    assert by[review.merchant_trans_id].cls == Class.OPEN
    assert by[pending.merchant_refund_id].cls == Class.OPEN and by[pending.merchant_refund_id].advice_key == \
        "open.refund"
    assert by[reversed_sale.merchant_trans_id].cls == Class.CANCELLED
    assert by[paid.merchant_trans_id].cls == Class.MATCHED


def test_other_stores_rows_are_left_out(day: Day) -> None:
    tx, st = day.files()
    other = dict(tx[0], storeId="STORE-B", merchantTransId="B-1", acquirementId="B-ACQ")
    ours = [dict(r, storeId="STORE-A") for r in tx]
    ptx = parse_file("t.csv", csv_text(TRANSACTION_DETAIL_COLUMNS, [*ours, other]))
    rec = reconcile("2024-05-01", ptx.rows, [], day.sales, day.refunds, store_id="STORE-A")
    assert rec.all_matched and rec.other_store == 1


def test_the_hk_variant_matches_the_same_day(day: Day, tmp_path) -> None:
    paths = day.ledger.export_files(tmp_path, "2024-05-01", family="hk", merchant_id=MID)
    assert sorted(p.name for p in paths) == [f"{MID}_fptrade_20240501.csv", f"{MID}_settle_20240501_1.csv"]
    ptx = parse_file(paths[0].name, paths[0].read_text())
    pst = parse_file(paths[1].name, paths[1].read_text())
    assert (ptx.family, ptx.role, pst.role) == ("hk", "transaction", "settlement")
    rec = reconcile("2024-05-01", ptx.rows, pst.rows, day.sales, day.refunds)
    assert rec.all_matched, render_text(rec)
    assert rec.totals["USD"].fees == 41 and rec.totals["USD"].settled == (1250 - 23) + (999 - 18) - 250
    refund = next(r for r in ptx.rows if r.kind == "REFUND")
    assert refund.original_merchant_trans_id == day.sales[0].merchant_trans_id


# ------------------------------------------------------------------ malformed files

GOOD = csv_text(TRANSACTION_DETAIL_COLUMNS, [{
    "merchantId": MID, "sellerID": "", "storeId": "", "productCode": "GlobalOfflineAcquire",
    "paymentTime": "2024-05-01T12:00:00+08:00", "orderTitle": "", "transType": "PAYMENT", "transStatus": "Success",
    "merchantTransId": "M1", "acquirementId": "A1", "originalAcquirementId": "", "orderAmount": "12.50",
    "orderCurrency": "USD", "remark": "", "userSite": "ALIPAY_CN", "siteUserId": ""}] * 2)


@pytest.mark.parametrize("text, line, words", [
    ("", 1, "empty"),
    ("a,b,c\n1,2,3\n", 1, "header row is not"),
    (GOOD[:-30], 3, "truncated"),                                   # cut mid-line, no final line break
    (GOOD + "x,y\n", 4, "2 fields where the header has 16"),
    (GOOD.replace("12.50", "12.505", 1), 2, "more decimals"),
    (GOOD.replace("USD", "XXX", 1), 2, "unknown currency"),
    (GOOD.replace("PAYMENT", "CHARGEBACK", 1), 2, "unknown transaction type"),
    (GOOD.replace(",M1,", ",,", 1), 2, "merchantTransId is empty"),
])
def test_a_bad_file_names_file_line_and_reason(text: str, line: int, words: str) -> None:
    with pytest.raises(FileError) as err:
        parse_file("ALIPAY_TRANSACTION_DETAIL_USD_20240501.csv", text)
    assert err.value.file == "ALIPAY_TRANSACTION_DETAIL_USD_20240501.csv"
    assert err.value.line == line and words in err.value.reason
    assert f"line {line}" in str(err.value)


def test_good_file_parses_with_a_byte_order_mark_and_crlf() -> None:
    parsed = parse_file("t.csv", "\ufeff" + GOOD.replace("\n", "\r\n"))
    assert [r.amount for r in parsed.rows] == [Money(1250, "USD")] * 2
    assert HK_COLUMNS[0] == "Partner_transaction_id"


# ------------------------------------------------------------------ outputs

def test_csv_and_printer_outputs(day: Day) -> None:
    tx, st = day.files()
    rec = day.match(tx[1:], st)
    rows = list(csv.DictReader(io.StringIO(render_csv(rec))))
    assert len(rows) == len(rec.items)
    problem = next(r for r in rows if r["class"] != "matched" and r["class"] != "cancelled")
    assert problem["advice"] and problem["ours"] in ("12.50", "9.99", "7.00", "2.50", "5000")
    lines = printer_lines(rec, width=32)
    assert all(len(line) <= 32 for line in lines)
    assert "1 TO CHECK" in lines and lines[0].startswith("Day") and lines[0].endswith("2024-05-01")
    data = rec.as_json()
    assert data["allMatched"] is False and {c["currency"] for c in data["currencies"]} == {"USD", "JPY"}


def test_other_terminals_rows_are_left_out(day: Day) -> None:
    tx, st = day.files()
    other = dict(tx[0], merchantTransId="POS02-20240501-AB12CD-000001", acquirementId="X1")
    unknown = dict(tx[0], merchantTransId="WEBSHOP-77", acquirementId="X2")
    ptx = parse_file("t.csv", csv_text(TRANSACTION_DETAIL_COLUMNS, [*tx, other, unknown]))
    rec = reconcile("2024-05-01", ptx.rows, [], day.sales, day.refunds, terminal_id="POS01")
    assert rec.other_terminal == 1
    assert [i.merchant_trans_id for i in rec.problems] == ["WEBSHOP-77"]   # not ours by its form: reported
    assert "other terminals were left out" in render_text(rec)



def test_the_settlement_summary_total_is_shown_beside_the_details(day: Day, tmp_path) -> None:
    paths = {p.name: p for p in day.ledger.export_files(tmp_path, "2024-05-01", merchant_id=MID)}
    assert sorted(paths) == sorted(f"ALIPAY_{kind}_{cur}_20240501.csv" for cur in ("JPY", "USD")
                                   for kind in ("TRANSACTION_DETAIL", "SETTLEMENT_DETAIL", "SETTLEMENT_SUMMARY"))
    parsed = [parse_file(name, p.read_text()) for name, p in paths.items()]
    rows = {role: [r for f in parsed if f.role == role for r in f.rows]
            for role in ("transaction", "settlement", "summary")}
    total = next(r for r in rows["summary"] if r.kind == "TOTAL" and r.amount.currency == "USD")
    assert total.fee == Money(41, "USD") and total.settlement == Money(1227 + 981 - 250, "USD")
    rec = reconcile("2024-05-01", rows["transaction"], rows["settlement"], day.sales, day.refunds,
                    summary=rows["summary"])
    usd = rec.totals["USD"]
    assert (usd.summary_net, usd.summary_fees) == (usd.settled, usd.fees)
    assert "summary file: net" in render_text(rec)
    text = paths["ALIPAY_SETTLEMENT_SUMMARY_USD_20240501.csv"].read_text()
    with pytest.raises(FileError, match="line 2: unknown summary type 'BONUS'"):
        parse_file("s.csv", text.replace("PAYMENT,", "BONUS,", 1))
