"""systemd/pos-terminal.service: systemd itself checks the unit.

`systemd-analyze verify` refuses a unit whose ExecStart binary does not
exist, and /opt/pos/venv/bin/pos exists only on an installed box. The test
therefore verifies a copy in tmp_path whose ExecStart points at this
checkout's `pos` console script (same arguments); every other line is
checked exactly as shipped. verify exits 0 even for unknown keys (it only
prints "Unknown key ... ignoring"), so the test also requires empty output.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "pos-terminal.service"
SHIPPED_EXEC = "/opt/pos/venv/bin/pos"

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (make system-deps)")


def _local_copy(tmp_path: Path) -> Path:
    pos_bin = Path(sys.executable).with_name("pos")
    assert pos_bin.exists(), "the package must be installed in the test venv (make test does it)"
    text = UNIT.read_text()
    assert f"ExecStart={SHIPPED_EXEC} run --config /etc/pos/terminal.toml" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={pos_bin} "))
    return copy


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


@needs_analyze
def test_systemd_analyze_verify_passes_without_warnings(tmp_path):
    result = _run("verify", str(_local_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


@needs_analyze
def test_verify_would_catch_a_typo(tmp_path):
    # Guards the guard: a misspelt option must show up in the output the test above requires empty.
    copy = _local_copy(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomme=yes"))
    result = _run("verify", str(copy))
    assert "ProtectHomme" in result.stderr


@needs_analyze
def test_hardening_exposure_is_low(tmp_path):
    # `systemd-analyze security` prints 0.0 (locked down) .. 10.0 (exposed);
    # --threshold is on a 0..100 scale, so 30 means "fail above 3.0"
    # (a default unit scores 9.6; this one about 1.9).
    result = _run("security", "--offline=true", "--threshold=30", str(_local_copy(tmp_path)))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def _service_section() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


def test_unit_has_the_agreed_contract():
    v = _service_section()
    expect = {
        "Service.Type": ["notify"],
        "Service.ExecStart": ["/opt/pos/venv/bin/pos run --config /etc/pos/terminal.toml"],
        "Service.Restart": ["always"],
        "Service.RestartSec": ["2"],
        "Service.User": ["pos"],
        "Service.Group": ["pos"],
        "Service.StateDirectory": ["pos"],
        "Service.ConfigurationDirectory": ["pos"],
        "Service.NoNewPrivileges": ["yes"],
        "Service.ProtectSystem": ["strict"],
        "Service.ProtectHome": ["yes"],
        "Service.PrivateTmp": ["yes"],
        "Service.DevicePolicy": ["closed"],
        "Service.UMask": ["0077"],
        "Install.WantedBy": ["multi-user.target"],
    }
    for key, value in expect.items():
        assert v.get(key) == value, key
    assert int(v["Service.WatchdogSec"][0]) > 0
    assert set(v["Service.SupplementaryGroups"][0].split()) == {"dialout", "lp"}
    families = set(v["Service.RestrictAddressFamilies"][0].split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families
    allowed = {entry.split()[0] for entry in v["Service.DeviceAllow"]}
    assert {"char-ttyS", "char-ttyACM", "char-ttyUSB", "char-usb", "char-usb_device"} <= allowed
    # Breaks cffi callbacks (cryptography): must stay off.
    assert "Service.MemoryDenyWriteExecute" not in v


def test_unit_parses_as_ini():
    # install.sh and packagers read it with plain INI tools; duplicate keys are allowed by systemd.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]


@needs_analyze
def test_the_headquarters_unit_verifies_without_warnings(tmp_path):
    unit = REPO / "systemd" / "pos-hq.service"
    pos_bin = Path(sys.executable).with_name("pos")
    text = unit.read_text()
    assert f"ExecStart={SHIPPED_EXEC} hq serve " in text
    copy = tmp_path / unit.name
    env = tmp_path / "hq.env"
    env.write_text("POS_HQ_DSN=postgresql://pos_hq@localhost/pos_hq\n")
    copy.write_text(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={pos_bin} ")
                    .replace("EnvironmentFile=/etc/pos/hq.env", f"EnvironmentFile={env}"))
    result = _run("verify", str(copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr
    exposure = _run("security", "--offline=true", "--threshold=30", str(copy))
    assert exposure.returncode == 0, exposure.stdout[-2000:] + exposure.stderr
