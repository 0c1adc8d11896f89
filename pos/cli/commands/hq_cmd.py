"""`pos hq ...`: the chain's headquarters (README "The chain").

The database is named by --dsn or the environment variable POS_HQ_DSN
(a libpq connection string such as 'postgresql://pos@db.example.com/pos_hq').
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys

from pos.core.errors import EXIT_CONFIG, UserError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hq = subparsers.add_parser("hq", help="the chain's headquarters: database, terminals, service",
                               description="Headquarters keeps every terminal's events in PostgreSQL and "
                                           "serves the chain's dashboard. The database is named by --dsn or "
                                           "POS_HQ_DSN.")
    sub = hq.add_subparsers(dest="hq_command", metavar="SUBCOMMAND", required=True)

    def with_dsn(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dsn", default=os.environ.get("POS_HQ_DSN", ""),
                       help="PostgreSQL connection string (default: $POS_HQ_DSN)")
        return p

    init = with_dsn(sub.add_parser("init-db", help="create or upgrade headquarters' database schema"))
    init.set_defaults(func=_init_db)

    add = with_dsn(sub.add_parser("add-terminal", help="register a terminal; prints its credential once"))
    add.add_argument("terminal_id", metavar="TERMINAL_ID", help="the terminal's [terminal] terminal_id")
    add.add_argument("--store", required=True, help="the store the terminal stands in (its id)")
    add.add_argument("--store-name", default="", help="the store's name, shown on the dashboard")
    add.add_argument("--cert", metavar="DIR", default=None,
                     help="issue a client certificate instead of a token: writes DIR/TERMINAL_ID.pem and "
                          "DIR/TERMINAL_ID.key (0600) for the terminal's [hq] cert_file and key_file")
    add.add_argument("--ca-dir", default="/etc/pos-hq/ca",
                     help="the terminals' CA that signs it ('pos hq init-ca'; default /etc/pos-hq/ca)")
    add.set_defaults(func=_add_terminal)

    ca = sub.add_parser("init-ca", help="create the CA that issues terminals' client certificates")
    ca.add_argument("dir", metavar="DIR", nargs="?", default="/etc/pos-hq/ca",
                    help="where to write terminals-ca.pem and terminals-ca.key (0600); default /etc/pos-hq/ca")
    ca.set_defaults(func=_init_ca)

    rev = with_dsn(sub.add_parser("revoke", help="revoke a terminal's credential (its events stay)"))
    rev.add_argument("terminal_id", metavar="TERMINAL_ID")
    rev.set_defaults(func=_revoke)

    user = with_dsn(sub.add_parser("add-user", help="add (or reset) a dashboard user; the password is read "
                                                    "from the terminal, or from standard input when piped"))
    user.add_argument("name", metavar="NAME")
    user.add_argument("--role", choices=["viewer", "manager"], default="viewer")
    user.set_defaults(func=_add_user)

    rec = with_dsn(sub.add_parser("reconcile", help="match a day's Alipay files against every terminal"))
    rec.add_argument("--date", required=True, help="the day, YYYY-MM-DD")
    rec.add_argument("--dir", required=True, help="folder holding the day's files (fetched into it with --config)")
    rec.add_argument("--config", default=None,
                     help="a config file whose [reconcile] and [gateway] merchant_id say where Alipay's SFTP "
                          "server is: fetch the day's files into --dir first")
    rec.set_defaults(func=_reconcile)

    serve = with_dsn(sub.add_parser("serve", help="run headquarters' ingest API and dashboard"))
    serve.add_argument("--listen", default="127.0.0.1:8780", help="HOST:PORT (default 127.0.0.1:8780)")
    serve.add_argument("--tls-cert", default=None, help="certificate (PEM) for HTTPS")
    serve.add_argument("--tls-key", default=None, help="its private key (PEM, mode 0600)")
    serve.add_argument("--client-ca", default=os.environ.get("POS_HQ_CLIENT_CA") or None,
                       help="accept terminals' client certificates signed by this CA (terminals-ca.pem); "
                            "needs --tls-cert (default: $POS_HQ_CLIENT_CA)")
    serve.set_defaults(func=_serve)


def _dsn(args: argparse.Namespace) -> str:
    if not args.dsn:
        raise UserError("no database given: pass --dsn 'postgresql://USER@HOST/DB' or set POS_HQ_DSN",
                        exit_code=EXIT_CONFIG)
    return str(args.dsn)


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise UserError(f"{what} {value!r}: use letters, digits, '.', '_' or '-' (at most 64)", exit_code=EXIT_CONFIG)
    return value


def _init_db(args: argparse.Namespace) -> int:
    from pos.hq.db import HqDB

    db = HqDB(_dsn(args))
    start, end = db.migrate()
    db.close()
    print(f"headquarters' schema at version {end}" + (f" (was {start})" if start != end else " (up to date)"))
    return 0


def _init_ca(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pos.hq.certs import CA_KEY, init_ca

    cert = init_ca(Path(args.dir))
    print(f"terminals' CA written: {cert} (give it to 'pos hq serve --client-ca') and {cert.parent / CA_KEY} "
          "(mode 0600: keep it at headquarters only)")
    return 0


def _add_terminal(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pos.hq.db import HqDB, HqError

    terminal_id, store = _check_id(args.terminal_id, "terminal id"), _check_id(args.store, "store id")
    db = HqDB(_dsn(args))
    db.check_schema()
    if args.cert is None:
        token = db.add_terminal(terminal_id, store, args.store_name)
        db.close()
        print(f"terminal {terminal_id} registered in store {store}. Its credential (shown only now):",
              file=sys.stderr)
        print(token)
        print("Put it alone in the terminal's [hq] token_file (mode 0600, owned by the service user).",
              file=sys.stderr)
        return 0
    from pos.hq.certs import issue_terminal_cert

    issued = issue_terminal_cert(Path(args.ca_dir), Path(args.cert), terminal_id, store)
    try:
        db.add_terminal(terminal_id, store, args.store_name, cert_sha256=issued.sha256)
    except HqError:
        issued.cert_path.unlink(missing_ok=True)
        issued.key_path.unlink(missing_ok=True)
        raise
    finally:
        db.close()
    print(f"terminal {terminal_id} registered in store {store} with a client certificate "
          f"(SHA-256 {issued.sha256}):")
    print(f"  certificate {issued.cert_path}")
    print(f"  key         {issued.key_path} (mode 0600)")
    print("Copy both to the terminal (the key mode 0600, owned by the service user) and set [hq] cert_file and "
          "key_file to them.")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from pos.hq.db import HqDB

    db = HqDB(_dsn(args))
    db.check_schema()
    done = db.revoke(args.terminal_id)
    db.close()
    if not done:
        raise UserError(f"no active terminal {args.terminal_id}: 'pos hq' knows only terminals added with "
                        "'pos hq add-terminal'", exit_code=EXIT_CONFIG)
    print(f"terminal {args.terminal_id} revoked: its credential is refused from now on")
    return 0


def _add_user(args: argparse.Namespace) -> int:
    from pos.hq.db import HqDB

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise UserError("the password is too short: 8 characters at least", exit_code=EXIT_CONFIG)
    db = HqDB(_dsn(args))
    db.check_schema()
    db.add_user(_check_id(args.name, "user name"), password, args.role)
    db.close()
    print(f"user {args.name} ({args.role}) can log in")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pos.hq.db import HqDB
    from pos.hq.reconcile import chain_reconcile

    folder = Path(args.dir)
    if args.config:
        from pos.config import load_config
        from pos.reconcile.fetch import SftpSettings, fetch_day

        cfg = load_config(args.config).config
        fetch_day(SftpSettings.from_config(cfg, args.date), folder, say=lambda text: print(text, file=sys.stderr))
    db = HqDB(_dsn(args))
    db.check_schema()
    result = chain_reconcile(db, args.date, folder)
    db.close()
    problems = result["items"]
    print(f"Chain reconciliation of {args.date}: {result['itemCount']} items, {len(problems)} to look at")
    for row in result["perTerminal"]:
        counts = ", ".join(f"{k} {v}" for k, v in row["counts"].items() if v)
        print(f"  store {row['store']} terminal {row['terminal']} {row['currency']}: {counts}; paid "
              f"{row['paid']}, refunded {row['refunded']}, fees {row['fees']}, net {row['netSettlement']} "
              "(minor units)")
    for i in problems:
        print(f"  {i['class']}: {i['id']} ({i['kind']}) store {i['store']} terminal {i['terminal']}: {i['advice']}")
    return 0 if not problems else 1


def _serve(args: argparse.Namespace) -> int:
    from pos.hq.service import serve

    return serve(_dsn(args), args.listen, tls_cert=args.tls_cert, tls_key=args.tls_key, client_ca=args.client_ca)
