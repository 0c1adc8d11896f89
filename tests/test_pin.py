"""Manager PIN: salted hash, lockout after wrong tries (surviving restarts), `pos pin set`."""

import io
import tomllib

from pos.cli.main import main
from pos.terminal.pin import PinGuard, hash_pin, verify_pin, write_pin_hash


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_hash_is_salted_and_verifies():
    a, b = hash_pin("1234"), hash_pin("1234")
    assert a != b and a.startswith("scrypt$")
    assert verify_pin("1234", a) and verify_pin("1234", b)
    assert not verify_pin("1235", a)
    assert not verify_pin("1234", "garbage") and not verify_pin("1234", "")


def test_lockout_after_max_attempts_and_it_survives_a_restart(tmp_path):
    clock, state = Clock(), tmp_path / "pin.json"
    guard = PinGuard(hash_pin("2468"), max_attempts=5, lockout=300, state_file=state, clock=clock)
    for left in (4, 3, 2, 1):
        r = guard.check("0000")
        assert not r.ok and not r.locked and r.attempts_left == left
    r = guard.check("0000")
    assert r.locked and r.locked_for == 300
    assert guard.check("2468").locked  # even the right PIN is refused while locked
    restarted = PinGuard(guard._hash, max_attempts=5, lockout=300, state_file=state, clock=clock)
    assert restarted.check("2468").locked
    clock.now += 301
    assert restarted.check("2468").ok


def test_right_pin_resets_the_count(tmp_path):
    clock = Clock()
    guard = PinGuard(hash_pin("2468"), max_attempts=3, lockout=60, state_file=None, clock=clock)
    guard.check("1111")
    guard.check("1111")
    assert guard.check("2468").ok
    assert guard.check("1111").attempts_left == 2


def test_no_pin_configured_never_opens(tmp_path):
    guard = PinGuard("", max_attempts=3, lockout=60, state_file=None, clock=Clock())
    assert not guard.enabled and not guard.check("").ok


def test_pos_pin_set_edits_only_the_pin_line(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "terminal.toml"
    cfg.write_text('# my store\n[manager]\nmax_attempts = 4 # keep\npin_hash = "old"\n\n[log]\nlevel = "DEBUG"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("97531\n"))
    assert main(["pin", "set", "--config", str(cfg), "--pin-stdin"]) == 0
    text = cfg.read_text()
    assert "# my store" in text and "max_attempts = 4 # keep" in text and '"old"' not in text
    data = tomllib.loads(text)
    assert verify_pin("97531", data["manager"]["pin_hash"]) and data["log"]["level"] == "DEBUG"


def test_pos_pin_set_adds_a_section_and_refuses_bad_pins(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "terminal.toml"
    cfg.write_text('[log]\nlevel = "INFO"')
    write_pin_hash(cfg, hash_pin("1234"))
    assert verify_pin("1234", tomllib.loads(cfg.read_text())["manager"]["pin_hash"])
    before = cfg.read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO("12a4\n"))
    assert main(["pin", "set", "--config", str(cfg), "--pin-stdin"]) == 1
    assert "4 to 12 digits" in capsys.readouterr().err
    assert cfg.read_text() == before
