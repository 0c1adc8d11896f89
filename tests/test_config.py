"""Configuration: every broken file gets one clear line and exit status 2; good files pass."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pos.cli.main import main
from pos.config import load_config
from pos.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def run_check(path, capsys, *extra):
    code = main(["config", "check", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["terminal.example.toml", "sandbox.toml"])
def test_shipped_configs_are_valid(name, capsys):
    code, out, err = run_check(REPO / "config" / name, capsys)
    assert code == 0, err
    assert "valid" in out and "[payment]" in out and "query_deadline = " in out


def test_example_documents_every_key():
    """Every key of the schema appears in the example file, so a technician can find it."""
    import tomllib

    from pos.config import Config
    example = tomllib.loads((REPO / "config" / "terminal.example.toml").read_text())
    for section in Config.model_fields:
        assert section in example, f"[{section}] missing from terminal.example.toml"
        keys = type(getattr(Config(), section)).model_fields
        missing = set(keys) - set(example[section])
        assert not missing, f"[{section}] keys not documented: {missing}"


BROKEN = [
    # (file text, words the one-line message must contain)
    ("[payment]\nquery_deadline = -5\n", ["[payment] query_deadline = -5", "at least 0.01"]),
    ("[payment]\nquery_deadline = \"60\"\n", ['query_deadline = "60"', "number"]),
    ("[payment]\nquery_interval_min = 8.0\nquery_interval_max = 6.0\n",
     ["[payment]", "query_interval_max must be at least"]),
    ("[terminal]\ncurrency = \"XYZ\"\n", ['[terminal] currency = "XYZ"', "ISO 4217"]),
    ("[terminal]\ncurrency = \"CNY\"\nsettlement_currency = \"CNY\"\n", ["[terminal]", "cannot be CNY"]),
    ("[terminal]\ncurrency = \"USD\"\nsettlement_currency = \"EUR\"\n", ["must settle in USD"]),
    ("[terminal]\nterminal_id = \"POS 01!\"\n", ['terminal_id = "POS 01!"', "1-16 letters or digits"]),
    ("[terminal]\ntimezone = \"Mars/Olympus\"\n", ['timezone = "Mars/Olympus"', "IANA"]),
    ("[gateway]\nurl = \"ftp://example.com\"\n", ['[gateway] url = "ftp://example.com"', "base URL"]),
    ("[gateway]\nurl = \"http://example.com\"\n", ["plain http", "https"]),
    ("[gateway]\nurl = \"https://example.com\"\nsandbox = true\n", ["sandbox = true is only allowed"]),
    ("[gateway]\nversion = \"3.0\"\n", ['version = "3.0"', "expected one of"]),
    ("[gateway]\nread_timeout = 0\n", ["read_timeout = 0", "at least 0.01"]),
    ("[gateway]\nprotocol = \"v2\"\n", ['[gateway] protocol = "v2"', "expected one of", "'offline'", "'ams'"]),
    ("[scanner]\nbaudrate = true\n", ["baudrate = true", "whole number"]),
    ("[scanner]\nterminator = \"TAB\"\n", ['terminator = "TAB"', "'CR'"]),
    ("[printer]\nkind = \"laser\"\n", ['[printer] kind = "laser"', "expected one of"]),
    ("[printer]\nnarrowest_bar = 0\n", ["[printer] narrowest_bar = 0", "expected 1, 2 or 3", "GS w"]),
    ("[printer]\nnarrowest_bar = 4\n", ["[printer] narrowest_bar = 4", "2 suits most printers"]),
    ("[payment]\ncancel_retries = 0\n", ["cancel_retries = 0", "at least 1"]),
    # issue 17: accepted before, though the wallet closes an unconfirmed payment after ~3 minutes
    ("[payment]\nquery_deadline = 400\n", ["query_deadline = 400 s is too long", "wallet closes",
                                            "use less than 150"]),
    ("[payment]\nlate_success = \"keep\"\n", ['late_success = "keep"', "'refund'", "'manager'"]),
    ("[store]\nmcc = \"58\"\n", ['[store] mcc = "58"']),
    ("[payment]\nquery_deadlin = 60\n", ["[payment] query_deadlin", "not a known key"]),
    ("[payments]\nquery_deadline = 60\n", ["[payments]", "not a known key"]),
    ("[ecr]\nlisten = \"8765\"\n", ['listen = "8765"', "HOST:PORT"]),
    ("payment = 5\n", ["[payment] = 5", "section"]),
    ("[payment\nquery_deadline = 60\n", ["not valid TOML"]),
    ("[log]\nlevel = \"LOUD\"\n", ['level = "LOUD"', "expected one of"]),
]


@pytest.mark.parametrize("text,words", BROKEN)
def test_broken_config_gets_one_clear_line_and_status_2(tmp_path, capsys, text, words):
    path = tmp_path / "terminal.toml"
    path.write_text(text)
    code, out, err = run_check(path, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("printer, warned", [
    ("print_qr = false\nwidth = 32\n", "needs 686 dots at narrowest_bar = 2 and the paper has 384"),
    ("print_qr = false\nwidth = 48\n", "needs 686 dots at narrowest_bar = 2 and the paper has 576"),
    ("print_qr = false\nwidth = 32\nnarrowest_bar = 1\n", None),   # 343 dots at 1 dot a bar
    ("print_qr = false\nwidth = 48\ndots = 700\n", None),
    ("print_qr = true\nwidth = 32\n", None),
])
def test_a_barcode_receipt_code_that_would_print_as_a_qr_code_is_warned_of(tmp_path, capsys, printer, warned):
    """print_qr = false on paper too narrow for this terminal's receipt ids: every receipt would carry a QR code."""
    from pos.config import Config
    from pos.ops.device_checks import check_receipt_code

    path = tmp_path / "terminal.toml"
    path.write_text(f'[terminal]\nterminal_id = "POS01"\n[printer]\n{printer}')
    code, out, err = run_check(path, capsys)
    assert code == 0 and "valid" in out
    lines = [x for x in err.splitlines() if "receipt code" in x]
    result = check_receipt_code(Config.model_validate({"printer": load_config(path).config.printer.model_dump()}))
    if warned is None:
        assert lines == [] and result.level.name == "OK", result
        return
    assert len(lines) == 1 and warned in lines[0] and "POS:POS01-20240501-VE6E99-000001: 343 modules" in lines[0]
    assert "set print_qr = true" in lines[0] and "narrowest_bar = 1 if the printer's manual says" in lines[0]
    assert result.level.name == "WARN" and warned in result.detail


def test_missing_and_unreadable_files(tmp_path, capsys):
    code, _, err = run_check(tmp_path / "nope.toml", capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run_check(tmp_path, capsys)
    assert code == 2 and "is a folder" in err
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[terminal]\nmerchant_name = \"Caf\xe9\"\n")
    code, _, err = run_check(bad, capsys)
    assert code == 2 and "not UTF-8" in err


def test_private_key_readable_by_others_is_refused(tmp_path, capsys):
    key = tmp_path / "merchant_private.pem"
    key.write_text("not really a key")
    key.chmod(0o644)
    path = tmp_path / "terminal.toml"
    path.write_text('[gateway]\nprivate_key = "merchant_private.pem"\n')
    code, _, err = run_check(path, capsys)
    assert code == 2
    assert f"chmod 600 {key}" in err and "0644" in err
    key.chmod(0o600)
    code, out, err = run_check(path, capsys)
    assert code == 0
    assert f'private_key = "{key}"' in out  # relative path resolved against the config's folder


def test_missing_keys_warn_for_check_and_fail_for_run(tmp_path, capsys):
    path = tmp_path / "terminal.toml"
    path.write_text('[gateway]\nprivate_key = "keys/none.pem"\n')
    code, _, err = run_check(path, capsys)
    assert code == 0 and "warning:" in err and "not found yet" in err
    with pytest.raises(ConfigError, match="file not found"):
        load_config(path, require_keys=True)
    code, _, err = run_check(path, capsys, "--require-keys")
    assert code == 2 and "pos keys generate" in err


def test_secrets_are_masked(tmp_path, capsys):
    path = tmp_path / "terminal.toml"
    from pos.terminal.pin import hash_pin
    pin_hash = hash_pin("1357")
    path.write_text(f'[manager]\npin_hash = "{pin_hash}"\n')
    code, out, _ = run_check(path, capsys)
    assert code == 0
    assert pin_hash.rsplit("$", 1)[1] not in out and 'pin_hash = "********"' in out
    # A malformed hash is refused without being printed either.
    path.write_text('[manager]\npin_hash = "scrypt$abcdef$0123456789"\n')
    code, out, err = run_check(path, capsys)
    assert code == 2 and "0123456789" not in out + err and "pin_hash" in err


def test_durations_accept_decimals_so_tests_can_shorten_them(tmp_path):
    path = tmp_path / "terminal.toml"
    path.write_text("[payment]\nquery_interval_min = 0.01\nquery_interval_max = 0.02\nquery_deadline = 0.5\n")
    cfg = load_config(path).config
    assert cfg.payment.query_deadline == 0.5 and cfg.payment.query_interval_min == 0.01


def test_cli_subprocess_has_real_exit_status_and_no_traceback(tmp_path):
    path = tmp_path / "terminal.toml"
    path.write_text("[payment]\nquery_deadline = -1\n")
    proc = subprocess.run([sys.executable, "-m", "pos", "config", "check", str(path)],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "POS_DEBUG": ""})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "query_deadline = -1" in proc.stderr


def test_version_and_help_on_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert "pos 0." in capsys.readouterr().out
    from pos.cli.main import build_parser
    parser = build_parser()
    subactions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    names = list(subactions[0].choices)
    assert "config" in names and "demo" in names
    for name in names:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        assert "usage: pos " + name in capsys.readouterr().out


# -- production vs sandbox credentials (issue 17) --------------------------------

def test_sandbox_credentials_against_production_are_refused_naming_what_to_change(tmp_path, capsys):
    """Before: 'valid' with a SANDBOX_ client id against the production URL."""
    path = tmp_path / "terminal.toml"
    path.write_text('[gateway]\nurl = "https://open-sea.alipay.com"\nclient_id = "SANDBOX_CLIENT"\n'
                    'merchant_id = "2188000000000001"\n')
    code, out, err = run_check(path, capsys)
    assert code == 2 and out == ""
    assert "client_id = 'SANDBOX_CLIENT' is a sandbox id" in err and "merchant_id = '2188000000000001'" in err
    assert "Client ID" in err and "Merchant ID" in err and "RSA2" in err and "Traceback" not in err


def test_keys_made_by_the_sandbox_are_refused_against_production(tmp_path, capsys):
    from pos.gateway.keys import generate_key_folder
    generate_key_folder(tmp_path / "keys")
    path = tmp_path / "terminal.toml"
    path.write_text(f'[gateway]\nurl = "https://open-sea.alipay.com"\nclient_id = "2188ABCDEF000001"\n'
                    f'merchant_id = "2188123456789012"\nprivate_key = "{tmp_path}/keys/merchant_private.pem"\n'
                    f'alipay_public_key = "{tmp_path}/keys/alipay_public.pem"\n'
                    f'merchant_public_key = "{tmp_path}/keys/merchant_public.pem"\n')
    code, _, err = run_check(path, capsys)
    assert code == 2 and "was made by the sandbox" in err and "alipay_private.pem" in err


def test_production_ids_against_the_local_sandbox_are_refused(tmp_path, capsys):
    path = tmp_path / "terminal.toml"
    path.write_text('[gateway]\nurl = "http://127.0.0.1:18080"\nsandbox = true\nclient_id = "2188ABCDEF000001"\n')
    code, _, err = run_check(path, capsys)
    assert code == 2 and "looks like a production Client ID" in err and "SANDBOX_" in err
