"""systemd/install.sh into a temporary root (DESTDIR): no root, no real system touched, no network.

The virtualenv step is skipped (--no-venv): creating it needs pip to build the
package, which needs the package index. POS_PYTHON is this test's
interpreter, which can import pos (the script computes the udev rule and the
token paths with `python -m pos.ops.installer`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "systemd" / "install.sh"


def _install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DESTDIR=str(root), POS_PYTHON=sys.executable)
    result = subprocess.run(["bash", str(SCRIPT), "--no-venv", *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _manifest(root: Path) -> dict[str, tuple[str, str]]:
    """path -> (mode, sha256 or 'dir')"""
    out: dict[str, tuple[str, str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = (oct(stat.S_IMODE(st.st_mode)), digest)
    return out


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_install_creates_the_tree(tmp_path):
    result = _install(tmp_path)
    etc = tmp_path / "etc" / "pos"
    assert (etc / "terminal.toml").read_text() == (REPO / "config" / "terminal.example.toml").read_text()
    assert _mode(etc / "terminal.toml") == 0o640
    assert _mode(etc / "keys") == 0o700
    for token in ("ecr.token", "ecr-manager.token"):
        assert _mode(etc / token) == 0o600 and len((etc / token).read_text().strip()) >= 32
    assert (etc / "ecr.token").read_text() != (etc / "ecr-manager.token").read_text()
    assert _mode(tmp_path / "var" / "lib" / "pos") == 0o700
    unit = tmp_path / "etc" / "systemd" / "system" / "pos-terminal.service"
    assert unit.read_text() == (REPO / "systemd" / "pos-terminal.service").read_text()
    rules = tmp_path / "etc" / "udev" / "rules.d" / "70-pos-terminal.rules"
    assert "no USB ids configured" in rules.read_text()
    if (REPO / "config" / "messages").is_dir():
        for f in (REPO / "config" / "messages").iterdir():
            assert (etc / "messages" / f.name).read_bytes() == f.read_bytes()
    # the real system is only described, never touched
    assert "would run: useradd --system" in result.stdout
    assert "would run: systemctl enable pos-terminal.service" in result.stdout
    assert "would run: chown pos:pos /etc/pos/keys" in result.stdout


def test_second_run_changes_nothing(tmp_path):
    _install(tmp_path)
    before = _manifest(tmp_path)
    result = _install(tmp_path)
    assert _manifest(tmp_path) == before
    assert "install: 0 change(s)" in result.stdout


def test_technicians_files_are_never_overwritten_and_udev_rule_follows_config(tmp_path):
    _install(tmp_path)
    etc = tmp_path / "etc" / "pos"
    cfg = etc / "terminal.toml"
    edited = cfg.read_text()
    for key, value in (("scanner_vendor", "05E0"), ("scanner_product", "1200"),
                       ("printer_vendor", "04b8"), ("printer_product", "0202")):
        edited = edited.replace(f'{key} = ""', f'{key} = "{value}"')
    cfg.write_text(edited)
    token = (etc / "ecr.token").read_text()
    result = _install(tmp_path)
    assert cfg.read_text() == edited
    assert (etc / "ecr.token").read_text() == token
    rules = (tmp_path / "etc" / "udev" / "rules.d" / "70-pos-terminal.rules").read_text()
    assert ('SUBSYSTEM=="tty", ATTRS{idVendor}=="05e0", ATTRS{idProduct}=="1200", SYMLINK+="pos-scanner", '
            'GROUP="dialout", MODE="0660"') in rules
    assert 'SUBSYSTEM=="usbmisc", KERNEL=="lp[0-9]*", ATTRS{idVendor}=="04b8"' in rules
    assert 'SYMLINK+="pos-printer"' in rules and "pos-display" not in rules
    assert "installed /etc/udev/rules.d/70-pos-terminal.rules" in result.stdout


def test_bad_config_stops_the_install_with_its_message(tmp_path):
    _install(tmp_path)
    cfg = tmp_path / "etc" / "pos" / "terminal.toml"
    cfg.write_text(cfg.read_text() + '\n')
    cfg.write_text(cfg.read_text().replace('scanner_vendor = ""', 'scanner_vendor = "xyz"'))
    env = dict(os.environ, DESTDIR=str(tmp_path), POS_PYTHON=sys.executable)
    result = subprocess.run(["bash", str(SCRIPT), "--no-venv"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "scanner_vendor" in result.stderr


def test_uninstall_keeps_config_and_journal_purge_removes_them(tmp_path):
    _install(tmp_path)
    journal = tmp_path / "var" / "lib" / "pos" / "journal.db"
    journal.write_bytes(b"sales")
    (tmp_path / "etc" / "pos" / "keys" / "merchant_private.pem").write_text("key")
    result = _install(tmp_path, "--uninstall")
    assert not (tmp_path / "etc" / "systemd" / "system" / "pos-terminal.service").exists()
    assert not (tmp_path / "etc" / "udev" / "rules.d" / "70-pos-terminal.rules").exists()
    assert journal.read_bytes() == b"sales"
    assert (tmp_path / "etc" / "pos" / "keys" / "merchant_private.pem").exists()
    assert "would run: systemctl disable --now pos-terminal.service" in result.stdout
    _install(tmp_path, "--uninstall", "--purge")
    assert not (tmp_path / "etc" / "pos").exists() and not (tmp_path / "var" / "lib" / "pos").exists()


@pytest.mark.parametrize("args, words", [(["--purge"], "--purge only goes with --uninstall"),
                                         (["--frobnicate"], "unknown option")])
def test_bad_options(tmp_path, args, words):
    env = dict(os.environ, DESTDIR=str(tmp_path), POS_PYTHON=sys.executable)
    result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and words in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_describes_usage():
    result = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "--uninstall" in result.stdout and "DESTDIR" in result.stdout


def test_the_dry_run_works_exactly_as_readme_shows_it(tmp_path):
    """Issue 17: without POS_PYTHON it crashed with ModuleNotFoundError (the system python3 lacks
    the package's dependencies). README's line, word for word, from another folder."""
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    assert "DESTDIR=/tmp/root systemd/install.sh --no-venv" in readme
    env = {k: v for k, v in os.environ.items() if k not in ("POS_PYTHON", "VIRTUAL_ENV")}
    env.update(DESTDIR=str(tmp_path / "root"), PATH="/usr/local/bin:/usr/bin:/bin")
    result = subprocess.run(["systemd/install.sh", "--no-venv"], cwd=SCRIPT.parents[1], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "root" / "etc" / "udev" / "rules.d" / "70-pos-terminal.rules").exists()
    bad = dict(env, POS_PYTHON="/bin/false")
    result = subprocess.run(["systemd/install.sh", "--no-venv"], cwd=SCRIPT.parents[1], env=bad,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "set POS_PYTHON" in result.stderr


def test_install_compiles_the_byte_code_a_start_would_otherwise_compile_every_time(tmp_path):
    """The unit sets PYTHONDONTWRITEBYTECODE=1, so the install writes every .pyc (--no-venv runs the
    program from its checkout: a copy here, so this checkout is left as it is); a second run rewrites none."""
    src = tmp_path / "src"
    for part in ("pos", "devices", "config", "systemd"):
        shutil.copytree(REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    env = dict(os.environ, DESTDIR=str(tmp_path / "root"), POS_PYTHON=sys.executable, PYTHONDONTWRITEBYTECODE="1")

    def install() -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["bash", str(src / "systemd" / "install.sh"), "--no-venv"], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    result = install()
    assert "byte code compiled" in result.stdout
    sources = [p for part in ("pos", "devices") for p in (src / part).rglob("*.py")]
    assert len(sources) > 50
    cached = {p: Path(importlib.util.cache_from_source(str(p))) for p in sources}
    missing = [str(p.relative_to(src)) for p, pyc in cached.items() if not pyc.exists()]
    assert missing == []
    stamps = {pyc: pyc.stat().st_mtime_ns for pyc in cached.values()}
    install()
    assert {pyc: pyc.stat().st_mtime_ns for pyc in cached.values()} == stamps
