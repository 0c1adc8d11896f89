"""The dashboard's pages: server-rendered HTML with an inline stylesheet and inline SVG (no CDN)."""

from __future__ import annotations

import html
from datetime import date, timedelta
from typing import Any

from pos.core.money import Money
from pos.hq.db import HqDB

__all__ = ["forbidden_page", "home_page", "item_page", "login_page", "reconcile_page", "WAITING_STATES"]

# States a person has to act on (README "Manual review").
WAITING_STATES = ("MANUAL_REVIEW", "PAID_LATE", "REFUND_PENDING")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:.6em 1em;display:flex;justify-content:space-between;align-items:center}
header form{margin:0} header button{background:#457b9d;color:#fff;border:0;padding:.3em .8em}
main{padding:1em;max-width:1100px} h2{margin-top:1.4em;font-size:1.1em}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left}
th{background:#eef} .ok{color:#2a7a2a} .bad{color:#b00020;font-weight:bold} .warn{color:#b26a00}
.login{max-width:22em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #ddd}
.login input{width:100%;margin:.3em 0 .8em;padding:.4em;box-sizing:border-box}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: str, who: tuple[str, str] | None = None) -> str:
    bar = ""
    if who:
        bar = (f"<header><strong>Chain headquarters</strong><span>{_e(who[0])} ({_e(who[1])}) "
               "<form method='post' action='/logout' style='display:inline'><button>Log out</button></form>"
               "</span></header>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{bar}<main>{body}</main></body></html>")


def login_page(error: str = "") -> str:
    err = f"<p class='bad'>{_e(error)}</p>" if error else ""
    return _page("Log in", f"""<div class='login'><h1>Chain headquarters</h1>{err}
<form method='post' action='/login'>
<label>Name<input name='name' id='name' autocomplete='username' required></label>
<label>Password<input name='password' id='password' type='password' autocomplete='current-password' required></label>
<button type='submit' id='login'>Log in</button></form></div>""")


def _money(minor: int, currency: str) -> str:
    try:
        return Money(int(minor), currency).receipt()
    except ValueError:
        return f"{minor} {currency}"


def _chart(today: dict[str, int], last_week: dict[str, int]) -> str:
    """One pair of bars per currency: today beside the same day last week (inline SVG)."""
    currencies = sorted(set(today) | set(last_week))
    if not currencies:
        return "<p>No sales yet.</p>"
    top = max([*today.values(), *last_week.values(), 1])
    width, bar = 90 * len(currencies) + 20, 30
    parts = [f"<svg id='totals-chart' xmlns='http://www.w3.org/2000/svg' width='{width}' height='170' "
             "role='img' aria-label='today against the same day last week'>"]
    for i, cur in enumerate(currencies):
        x = 20 + i * 90
        for j, (series, colour) in enumerate(((last_week, "#a8dadc"), (today, "#1d3557"))):
            h = round(130 * series.get(cur, 0) / top)
            parts.append(f"<rect x='{x + j * (bar + 2)}' y='{140 - h}' width='{bar}' height='{h}' fill='{colour}'/>")
        parts.append(f"<text x='{x}' y='160' font-size='12'>{_e(cur)}</text>")
    parts.append("</svg><p><span style='color:#a8dadc'>&#9632;</span> same day last week "
                 "<span style='color:#1d3557'>&#9632;</span> today</p>")
    return "".join(parts)


def _revoke_cell(t: dict[str, Any], who: tuple[str, str]) -> str:
    """Managers may revoke a terminal's credential (a stolen box); read-only users see no button."""
    if who[1] != "manager":
        return ""
    if t["revoked_at"] is not None:
        return "<td>revoked</td>"
    return (f"<td><form method='post' action='/terminals/{_e(t['terminal_id'])}/revoke'>"
            f"<button class='revoke'>Revoke</button></form></td>")


def error_page(title: str, detail: str) -> str:
    """A dashboard request that could not be answered: what is wrong and what to do, as a plain page."""
    return _page(title, f"<h1>{_e(title)}</h1><p>{_e(detail)}</p><p><a href='/'>Back to the dashboard</a></p>")


def forbidden_page(who: tuple[str, str]) -> str:
    return _page("Not allowed", "<h1>Not allowed</h1><p>Only a manager may do this; your login is read-only.</p>"
                 "<p><a href='/'>Back</a></p>", who)


def _totals(db: HqDB, day: date) -> dict[str, int]:
    rows = db.rows("SELECT currency, SUM(amount_minor) AS total FROM items WHERE item_kind = 'sale' "
                   "AND state = 'PAID' AND local_date = %s GROUP BY currency", (day,))
    return {r["currency"]: int(r["total"]) for r in rows}


def home_page(db: HqDB, who: tuple[str, str], day_text: str) -> str:
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        day = date.today()
    terminals = db.rows(
        "SELECT t.terminal_id, t.store_id, s.name AS store_name, t.last_seen, t.backlog, t.revoked_at, "
        "t.last_health->>'status' AS status, t.last_health->>'open_items' AS open_items, "
        "t.last_health->>'last_alarm' AS last_alarm, "
        "EXTRACT(EPOCH FROM now() - t.last_seen) AS age FROM terminals t JOIN stores s USING (store_id) "
        "ORDER BY t.store_id, t.terminal_id")
    rows = []
    for t in terminals:
        if t["revoked_at"] is not None:
            up = "<span class='warn'>revoked</span>"
        elif t["age"] is None:
            up = "<span class='warn'>never seen</span>"
        elif float(t["age"]) > 120:
            up = f"<span class='bad'>silent {int(float(t['age']) // 60)} min</span>"
        else:
            up = "<span class='ok'>up</span>"
        status = t["status"] or "-"
        cls = "ok" if status == "ok" else "bad"
        rows.append(f"<tr class='terminal' data-terminal='{_e(t['terminal_id'])}'><td>{_e(t['store_id'])} "
                    f"{_e(t['store_name'])}</td><td>{_e(t['terminal_id'])}</td><td>{up}</td>"
                    f"<td>{_e(t['last_seen'] and t['last_seen'].strftime('%Y-%m-%d %H:%M:%S UTC'))}</td>"
                    f"<td class='{cls}'>{_e(status)}</td><td>{_e(t['open_items'])}</td><td>{_e(t['backlog'])}</td>"
                    f"<td>{_e(t['last_alarm'] or '')}</td>{_revoke_cell(t, who)}</tr>")
    waiting = db.rows("SELECT i.*, s.name AS store_name FROM items i JOIN stores s USING (store_id) "
                      "WHERE state = ANY(%s) ORDER BY updated_at", (list(WAITING_STATES),))
    wrows = [f"<tr class='waiting'><td>{_e(w['store_id'])}</td><td>{_e(w['terminal_id'])}</td>"
             f"<td><a href='/item/{_e(w['terminal_id'])}/{_e(w['ref'])}'>{_e(w['ref'])}</a></td>"
             f"<td>{_e(w['state'])}</td><td>{_e(_money(w['amount_minor'], w['currency']))}</td>"
             f"<td>{_e(w['acquirement_id'] or '')}</td><td>{_e(w['code_masked'] or '')}</td></tr>" for w in waiting]
    today, last_week = _totals(db, day), _totals(db, day - timedelta(days=7))
    totals = "".join(f"<tr><td>{_e(c)}</td><td class='total'>{_e(_money(today.get(c, 0), c))}</td>"
                     f"<td>{_e(_money(last_week.get(c, 0), c))}</td></tr>"
                     for c in sorted(set(today) | set(last_week)))
    body = f"""<h1>Stores and terminals</h1>
<table id='terminals'><tr><th>Store</th><th>Terminal</th><th>Link</th><th>Last heartbeat</th><th>Health</th>
<th>Open items</th><th>Not yet shipped</th><th>Last alarm</th>{"<th>Credential</th>" if who[1] == "manager" else ""}
</tr>{''.join(rows)}</table>
<h2>Paid on {day.isoformat()} against {(day - timedelta(days=7)).isoformat()}</h2>
<form method='get' action='/'><input type='date' name='day' value='{day.isoformat()}'><button>Show</button></form>
<table id='totals'><tr><th>Currency</th><th>{day.isoformat()}</th><th>same day last week</th></tr>{totals}</table>
{_chart(today, last_week)}
<p><a id='reconcile-link' href='/reconcile?day={day.isoformat()}'>Reconciliation with Alipay of {day.isoformat()}</a>
</p>
<h2>Waiting for a person ({len(waiting)})</h2>
<table id='waiting'><tr><th>Store</th><th>Terminal</th><th>merchantTransId / merchantRefundId</th><th>State</th>
<th>Amount</th><th>acquirementId</th><th>Code</th></tr>{''.join(wrows)}</table>"""
    return _page("Chain headquarters", body, who)


def item_page(db: HqDB, who: tuple[str, str], terminal_id: str, ref: str) -> str | None:
    found = db.rows("SELECT * FROM items WHERE terminal_id = %s AND ref = %s", (terminal_id, ref))
    if not found:
        return None
    it = found[0]
    events = db.rows("SELECT seq, at, body FROM events WHERE terminal_id = %s AND body->>'ref' = %s ORDER BY seq",
                     (terminal_id, ref))
    erows = "".join(f"<tr><td>{e['seq']}</td><td>{_e(e['body'].get('trigger'))}</td><td>{_e(e['body'].get('source'))}"
                    f"</td><td>{_e(e['body'].get('dest'))}</td><td>{_e(e['body'].get('detail'))}</td></tr>"
                    for e in events)
    printed = db.receipts_of(terminal_id, ref)
    receipts = "".join(
        f"<h2>Receipt{' (reprint)' if p['body'].get('reprint_of') else ''}</h2><img class='receipt' "
        f"alt='receipt {_e(ref)}' src='/receipt/{_e(terminal_id)}/{_e(p['install_id'])}/{p['seq']}.png'>"
        for p in printed[:3])
    body = f"""<h1>{_e(it['item_kind'])} {_e(ref)}</h1>
<p>Store {_e(it['store_id'])}, terminal {_e(terminal_id)}; state <strong>{_e(it['state'])}</strong>;
{_e(_money(it['amount_minor'], it['currency']))}; acquirementId {_e(it['acquirement_id'] or '-')};
code {_e(it['code_masked'] or '-')}; day {_e(it['local_date'])}.</p>
<table><tr><th>seq</th><th>trigger</th><th>from</th><th>to</th><th>detail</th></tr>{erows}</table>
{receipts}<p><a href='/'>Back</a></p>"""
    return _page(ref, body, who)


def reconcile_page(db: HqDB, who: tuple[str, str], day_text: str) -> str:
    try:
        day = date.fromisoformat(day_text).isoformat()
    except ValueError:
        day = date.today().isoformat()
    form = (f"<form method='get' action='/reconcile'><input type='date' name='day' value='{day}'>"
            "<button>Show</button></form>")
    result = db.reconciliation(day)
    if result is None:
        body = (f"<h1>Reconciliation of {day}</h1>{form}<p id='no-reconciliation'>Not reconciled yet: run "
                f"<code>pos hq reconcile --date {day} --dir FOLDER</code>.</p>")
        return _page(f"Reconciliation {day}", body, who)
    currencies = "".join(
        f"<tr><td>{_e(c['currency'])}</td><td>{_e(_money(c['paid'], c['currency']))}</td>"
        f"<td>{_e(_money(c['refunded'], c['currency']))}</td><td>{_e(_money(c['fees'], c['currency']))}</td>"
        f"<td>{_e(_money(c['netSettlement'], c['currency']))}</td></tr>" for c in result["currencies"])
    per = "".join(
        f"<tr><td>{_e(r['store'])}</td><td>{_e(r['terminal'])}</td><td>{_e(r['currency'])}</td>"
        + "".join(f"<td>{_e(r['counts'].get(k, 0))}</td>" for k in _CLASSES)
        + "".join(f"<td>{_e(_money(r.get(k, 0), r['currency']))}</td>" for k in _AMOUNTS) + "</tr>"
        for r in result["perTerminal"])
    problems = result["items"]
    prows = "".join(
        f"<tr class='problem'><td>{_e(i['class'])}</td><td>{_e(i['store'])}</td><td>{_e(i['terminal'])}</td>"
        f"<td>{_e(i['id'])}</td><td>{_e(i['kind'])}</td><td>{_e(i['ours'])}</td><td>{_e(i['alipay'])}</td>"
        f"<td>{_e(i['currency'])}</td><td>{_e(i['where'])}</td><td>{_e(i['advice'])}</td></tr>" for i in problems)
    state = ("<p class='ok' id='all-matched'>Everything matches.</p>" if not problems
             else f"<p class='bad' id='problems'>{len(problems)} items to look at.</p>")
    body = f"""<h1>Reconciliation of {day}</h1>{form}{state}
<p>Files: {_e(', '.join(result['files']))}</p>
<table id='currencies'><tr><th>Currency</th><th>Paid</th><th>Refunded</th><th>Fees</th><th>Net settlement</th></tr>
{currencies}</table>
<h2>Per store and terminal</h2>
<table id='per-terminal'><tr><th>Store</th><th>Terminal</th><th>Currency</th>
{''.join(f"<th>{k}</th>" for k in _CLASSES)}
<th>Paid</th><th>Refunded</th><th>Fees</th><th>Net settlement</th></tr>{per}</table>
<h2>To look at</h2>
<table id='reconcile-problems'><tr><th>Class</th><th>Store</th><th>Terminal</th><th>Id</th><th>Kind</th>
<th>Ours (minor)</th><th>Alipay (minor)</th><th>Currency</th><th>Where</th><th>What to do</th></tr>{prows}</table>
<p><a href='/'>Back</a></p>"""
    return _page(f"Reconciliation {day}", body, who)


_CLASSES = ("matched", "cancelled", "alipay_only", "ours_only", "mismatch", "open")
_AMOUNTS = ("paid", "refunded", "fees", "netSettlement")
