"""Fetching the reconciliation files from a real SFTP server on 127.0.0.1 (asyncssh's server, started here).

Host-key pinning, a complete file not fetched twice, a dropped connection resumed,
a file that changes while it downloads fetched again, secrets refused when readable.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pos.config import Config, GatewaySection, ReconcileSection, TerminalSection
from pos.core.errors import ConfigError
from pos.core.money import Money
from pos.reconcile.fetch import FetchError, HostKeyError, SftpSettings, fetch_day
from pos.sandbox.ledger import Ledger
from pos.sandbox.scenarios import make_code
from pos.sandbox.sftp import SandboxSftp

BJ = timezone(timedelta(hours=8))
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=BJ)
MID = "2188000000000001"
REMOTE = f"/download/{MID}/20240501"
BIG = "ALIPAY_TRANSACTION_DETAIL_USD_20240501.csv"


@pytest.fixture
def served(tmp_path: Path):
    """An SFTP server whose root holds a busy day's files (the USD transaction file is ~250 kB)."""
    root = tmp_path / "sftp-root"
    folder = root / REMOTE.lstrip("/")
    ledger = Ledger()
    for i in range(1500):
        ledger.pay(MID, f"POS01-20240501-TEST01-{i:06d}", make_code("00"), Money(100 + i, "USD"), "", NOW)
    ledger.pay(MID, "POS01-20240501-TEST01-JPY001", make_code("00"), Money(5000, "JPY"), "", NOW)
    ledger.export_files(folder, date(2024, 5, 1))
    (folder / "README.txt").write_text("not a reconciliation file\n")
    with SandboxSftp(root) as server:
        yield server, folder


def settings(server: SandboxSftp, **over: object) -> SftpSettings:
    values: dict[str, object] = dict(host="127.0.0.1", port=server.port, username="alipay",
                                     host_key=server.fingerprint, remote_dir=REMOTE, pattern="*20240501*.csv",
                                     password="sandbox", timeout=10.0, attempts=3)
    values.update(over)
    return SftpSettings(**values)  # type: ignore[arg-type]


def test_fetches_the_days_files_and_not_twice(served, tmp_path: Path) -> None:
    server, folder = served
    archive = tmp_path / "archive"
    said: list[str] = []
    got = fetch_day(settings(server), archive, say=said.append)
    names = sorted(p.name for p in folder.iterdir() if p.suffix == ".csv")
    assert [f.name for f in got] == names and len(names) == 6     # per currency: transactions, settlement, summary
    assert all(f.how == "fetched" for f in got)
    for name in names:
        assert (archive / name).read_bytes() == (folder / name).read_bytes()
    assert not (archive / "README.txt").exists() and not list(archive.glob("*.part"))
    assert any("complete" in line for line in said)
    served_before = dict(server.bytes_served)
    again = fetch_day(settings(server), archive, say=said.append)
    assert all(f.how == "unchanged" for f in again)
    assert server.bytes_served == served_before          # nothing read the second time


def test_a_wrong_host_key_is_refused_with_its_fingerprint(served, tmp_path: Path) -> None:
    server, _ = served
    other = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyError) as err:
        fetch_day(settings(server, host_key=other), tmp_path / "a")
    assert server.fingerprint in str(err.value) and other in str(err.value)
    assert err.value.offered == server.fingerprint
    assert server.auth_attempts == 0                     # the password never left
    with pytest.raises(HostKeyError, match="no host key is pinned") as err:
        fetch_day(settings(server, host_key=""), tmp_path / "a")
    assert f'host_key = "{server.fingerprint}"' in str(err.value)
    assert server.auth_attempts == 0 and not list((tmp_path / "a").iterdir())


def test_a_wrong_password_is_a_clear_error(served, tmp_path: Path) -> None:
    server, _ = served
    with pytest.raises(FetchError, match="refused the login of 'alipay'"):
        fetch_day(settings(server, password="wrong"), tmp_path / "a")


def test_a_dropped_connection_resumes_mid_file(served, tmp_path: Path) -> None:
    server, folder = served
    size = (folder / BIG).stat().st_size
    assert size > 200_000
    server.drop_after[BIG] = size // 2
    said: list[str] = []
    got = {f.name: f for f in fetch_day(settings(server), tmp_path / "a", say=said.append)}
    assert got[BIG].how == "resumed"
    assert (tmp_path / "a" / BIG).read_bytes() == (folder / BIG).read_bytes()
    assert any("connection lost" in line for line in said)
    assert any("resuming at" in line for line in said)
    assert server.logins == 2
    assert server.bytes_served[BIG] < size * 1.2          # resumed, not downloaded twice


def test_a_file_that_changes_mid_download_is_fetched_again(served, tmp_path: Path) -> None:
    server, folder = served
    size = (folder / BIG).stat().st_size
    row = (folder / BIG).read_text().splitlines()[1]
    late = row.replace("TEST01-000000", "TEST01-LATE01") + "\n"
    server.change_after[BIG] = (size // 3, late.encode())
    said: list[str] = []
    got = {f.name: f for f in fetch_day(settings(server), tmp_path / "a", say=said.append)}
    assert got[BIG].how == "refetched" and got[BIG].size == size + len(late)
    fetched = (tmp_path / "a" / BIG).read_text()
    assert fetched == (folder / BIG).read_text() and fetched.endswith(late)
    assert any("changed on the server while downloading" in line for line in said)


def test_a_partial_file_restarts_when_the_server_file_changed(served, tmp_path: Path) -> None:
    server, folder = served
    archive = tmp_path / "a"
    server.drop_after[BIG] = 100_000
    with pytest.raises(FetchError, match="resumes where it stopped"):
        fetch_day(settings(server, attempts=1), archive)
    assert (archive / f"{BIG}.part").stat().st_size > 0
    with (folder / BIG).open("a") as f:       # Alipay rewrote the file meanwhile
        f.write((folder / BIG).read_text().splitlines()[1].replace("000001", "LATE02") + "\n")
    got = {f.name: f for f in fetch_day(settings(server), archive)}
    assert got[BIG].how == "fetched"
    assert (archive / BIG).read_bytes() == (folder / BIG).read_bytes()


def test_secret_files_must_be_private(tmp_path: Path) -> None:
    pw = tmp_path / "sftp.password"
    pw.write_text("sandbox\n")
    pw.chmod(0o644)
    cfg = Config(terminal=TerminalSection(state_dir=str(tmp_path)),
                 reconcile=ReconcileSection(username="alipay", password_file=str(pw)))
    with pytest.raises(ConfigError, match="chmod 600"):
        SftpSettings.from_config(cfg, "2024-05-01")
    pw.chmod(0o600)
    s = SftpSettings.from_config(cfg, "2024-05-01")
    assert s.password == "sandbox" and s.remote_dir == f"/download/{cfg.gateway.merchant_id}/20240501"
    assert s.pattern == "*20240501*.csv"
    with pytest.raises(ConfigError, match="password_file or private_key"):
        SftpSettings.from_config(Config(reconcile=ReconcileSection(username="alipay")), "2024-05-01")


# ------------------------------------------------------------------ importing into the journal

def test_import_is_whole_and_once(tmp_path: Path) -> None:
    from pos.journal.journal import Journal
    from pos.journal.reconcile_files import ReconcileFiles
    from pos.reconcile.parse import FileError
    from pos.reconcile.store import day_report, import_folder

    ledger = Ledger()
    ledger.pay(MID, "POS01-20240501-TEST01-000001", make_code("00"), Money(1250, "USD"), "", NOW)
    folder = tmp_path / "files"
    ledger.export_files(folder, date(2024, 5, 1))
    journal = Journal.open(tmp_path / "journal.db", timezone="Asia/Shanghai")
    try:
        first = import_folder(journal, "2024-05-01", folder, 1.0)
        assert [(f.new, f.rows, f.role) for f in first] == [(True, 1, "settlement"), (True, 2, "summary"),
                                                             (True, 1, "transaction")]
        assert [f.new for f in import_folder(journal, "2024-05-01", folder, 2.0)] == [False] * 3
        assert ReconcileFiles(journal).count() == 3
        rec = day_report(journal, "2024-05-01")
        assert [i.cls.value for i in rec.items] == ["alipay_only"]   # the journal has no such sale
        bad = folder / "ALIPAY_TRANSACTION_DETAIL_USD_20240501.csv"
        text = bad.read_text()
        bad.write_text(text + text.splitlines()[1][:40] + "\n")    # a cut line at the end
        with pytest.raises(FileError, match="line 3"):
            import_folder(journal, "2024-05-01", folder, 3.0)
        assert ReconcileFiles(journal).count() == 3                 # nothing of it was stored
        assert len(day_report(journal, "2024-05-01").items) == 1
    finally:
        journal.close()


# ------------------------------------------------------------------ the daemon's scheduled run

def test_due_day_is_yesterday_once_fetch_at_has_passed() -> None:
    from pos.reconcile.scheduled import due_day

    morning = datetime(2024, 5, 2, 6, 59, tzinfo=BJ)
    assert due_day(morning, "07:00", set()) is None
    assert due_day(morning + timedelta(minutes=1), "07:00", set()) == "2024-05-01"
    assert due_day(morning + timedelta(hours=5), "07:00", {"2024-05-01"}) is None
    assert due_day(morning + timedelta(hours=5), "", set()) is None


def test_scheduled_run_alarms_on_a_mismatch_and_on_a_failure(served, tmp_path: Path) -> None:
    from pos.journal.journal import Journal
    from pos.reconcile.scheduled import ReconcileScheduler

    server, folder = served
    pw = tmp_path / "pw"
    pw.write_text("sandbox\n")
    pw.chmod(0o600)
    empty_day = folder.parent / "20240502"
    Ledger().export_files(empty_day, date(2024, 5, 2))        # a day without payments: headers only
    (empty_day / "ALIPAY_TRANSACTION_DETAIL_USD_20240502.csv").write_text(
        (folder / BIG).read_text().splitlines()[0] + "\n")
    cfg = Config(terminal=TerminalSection(state_dir=str(tmp_path / "state")),
                 gateway=GatewaySection(merchant_id=MID),
                 reconcile=ReconcileSection(host="127.0.0.1", port=server.port, username="alipay",
                                            password_file=str(pw), host_key=server.fingerprint,
                                            fetch_at="07:00"))
    alarms: list[str] = []
    journal = Journal.open(tmp_path / "journal.db", timezone="Asia/Shanghai")
    try:
        sched = ReconcileScheduler(cfg, journal, clock=lambda: 1.0e9, alarm=alarms.append)
        quiet = sched.run("2024-05-02")
        assert quiet is not None and quiet.all_matched and alarms == []
        rec = sched.run("2024-05-01")                         # Alipay has 1501 payments the journal lacks
        assert rec is not None and not rec.all_matched
        assert alarms == ["reconciliation of 2024-05-01: 1501 item(s) do not match (alipay_only): "
                          "see 'pos reconcile report --date 2024-05-01'"]
        assert sched.done == {"2024-05-01", "2024-05-02"}
        broken = ReconcileScheduler(cfg.model_copy(update={"reconcile": cfg.reconcile.model_copy(
            update={"host_key": "SHA256:" + "B" * 43})}), journal, clock=lambda: 1.0e9, alarm=alarms.append)
        assert broken.run("2024-05-03") is None
        assert "reconciliation of 2024-05-03 failed" in alarms[-1] and server.fingerprint in alarms[-1]
        assert broken.done == set()
    finally:
        journal.close()


def test_progress_bar_on_a_terminal_only() -> None:
    import io

    from pos.reconcile.fetch import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(stream)
        bar.update("F.csv", 50, 200)
        bar.update("F.csv", 200, 200)
    assert pipe.getvalue() == ""
    assert " 25%" in tty.getvalue() and "100%\n" in tty.getvalue() and "#" * 30 in tty.getvalue()


def test_pos_sandbox_writes_the_days_files_and_serves_them_over_sftp(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import requests

    from pos.gateway.keys import generate_key_folder

    generate_key_folder(tmp_path / "keys")
    proc = subprocess.Popen([sys.executable, "-m", "pos", "sandbox", "--port", "0", "--keys", str(tmp_path / "keys"),
                             "--files-dir", str(tmp_path / "files"), "--sftp-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        url = lines[0].split()[4]
        assert "reconciliation files go to" in lines[1]
        sftp_port = int(lines[2].split("127.0.0.1:")[1].split(",")[0])
        fingerprint = lines[2].rsplit("host key ", 1)[1].strip()
        bad = requests.post(url + "/sandbox/reconciliation/2024-13-01", timeout=5)
        assert bad.status_code == 422 and "month" in bad.json()["error"]
        r = requests.post(url + "/sandbox/reconciliation/2024-05-01?family=hk", timeout=5)
        assert r.status_code == 200, r.text
        assert r.json()["files"] == [f"{MID}_fptrade_20240501.csv", f"{MID}_settle_20240501_1.csv"]
        s = SftpSettings(host="127.0.0.1", port=sftp_port, username="alipay", password="sandbox",
                         host_key=fingerprint, remote_dir=REMOTE, pattern="*20240501*.csv", timeout=10.0)
        got = fetch_day(s, tmp_path / "archive")
        assert [f.name for f in got] == r.json()["files"]
        assert (tmp_path / "archive" / got[0].name).read_text().startswith("Partner_transaction_id,")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_login_with_a_private_key_instead_of_a_password(tmp_path: Path) -> None:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "id").write_bytes(key.export_private_key())
    (tmp_path / "id").chmod(0o600)
    key.write_public_key(str(tmp_path / "id.pub"))
    folder = tmp_path / "root" / REMOTE.lstrip("/")
    folder.mkdir(parents=True)
    (folder / "ALIPAY_TRANSACTION_DETAIL_USD_20240501.csv").write_text("x\n")
    with SandboxSftp(tmp_path / "root", client_key=tmp_path / "id.pub") as server:
        cfg = Config(gateway=GatewaySection(merchant_id=MID),
                     reconcile=ReconcileSection(host="127.0.0.1", port=server.port, username="alipay",
                                                private_key=str(tmp_path / "id"), host_key=server.fingerprint))
        s = SftpSettings.from_config(cfg, "2024-05-01")
        assert s.password is None
        got = fetch_day(s, tmp_path / "a")
        assert [(f.name, f.how) for f in got] == [("ALIPAY_TRANSACTION_DETAIL_USD_20240501.csv", "fetched")]
        assert server.logins == 1 and server.auth_attempts == 0


def test_a_day_not_published_yet_is_a_clear_error(served, tmp_path: Path) -> None:
    server, _ = served
    with pytest.raises(FetchError, match="has no folder /download/2188000000000001/20240509: the day's files"):
        fetch_day(settings(server, remote_dir="/download/2188000000000001/20240509"), tmp_path / "a")
