"""An engine item's working copy of its record (pos/core/items.py): changes are kept apart until read or
handed out, and every read sees every change made before it."""

from __future__ import annotations

import random

import pytest

from pos.config import PaymentSection
from pos.core.items import Context, SaleItem
from pos.core.records import SaleState
from tests.engine_harness import T0, sale_record


def paying_item() -> SaleItem:
    item = SaleItem(Context(PaymentSection().schedule(), random.Random(0)), sale_record(7), new=True)
    item.state = SaleState.PAYING.value   # what the machine sets
    return item


def test_a_change_is_read_back_at_once_and_handed_out_with_the_state() -> None:
    item = paying_item()
    item.change(pay_sent_at=T0 + 1)
    assert item.record.pay_sent_at == T0 + 1
    item.change(query_count=item.record.query_count + 1)
    item.touch(T0 + 2)
    snap = item.snapshot()
    assert (snap.state, snap.pay_sent_at, snap.query_count, snap.updated_at) == (SaleState.PAYING, T0 + 1, 1, T0 + 2)
    assert item.record is snap   # nothing left to copy in


def test_what_never_changes_is_kept_on_the_item() -> None:
    item = paying_item()
    assert (item.item_id, item.name, item.amount) == (7, "sale POS01-20270115-TEST01-000007", sale_record(7).amount)


def test_an_alarm_is_raised_once_and_recorded() -> None:
    item = paying_item()
    assert item.alarm_at == T0 + PaymentSection().schedule().alarm_after
    item.mark_alarmed()
    assert item.alarm_at is None and item.snapshot().alarmed


def test_a_field_the_record_does_not_have_is_refused() -> None:
    item = paying_item()
    item.change(pay_sent=T0)
    with pytest.raises(TypeError, match="pay_sent"):
        item.snapshot()
