#!/usr/bin/env bash
# Install (or remove) the pos-terminal service on a POS box. Run as root from a source checkout:
#
#   sudo systemd/install.sh                 install or upgrade; safe to run again (changes nothing then)
#   sudo systemd/install.sh --uninstall     remove the service, the program and the udev rule;
#                                           keeps /etc/pos (config, keys, tokens) and /var/lib/pos (journal)
#   sudo systemd/install.sh --uninstall --purge   also remove /etc/pos, /var/lib/pos and the pos user
#
# Options / environment:
#   DESTDIR=DIR        install into DIR as the root ("/" = the real system). No root needed; user
#                      creation, chown, systemctl and udevadm are printed as "would run: ..." instead.
#   --no-venv          do not create /opt/pos/venv nor pip install (POS_INSTALL_NO_VENV=1); tests use it
#   --pip-args "ARGS"  extra arguments for pip install (POS_PIP_ARGS), e.g. "--no-deps --no-index"
#   POS_PYTHON=python3.11   the interpreter for the virtualenv (>= 3.11); with --no-venv it must be
#                      able to import pos (it computes the udev rule and token paths from the config)
#
# What it does: the pos system user (groups dialout, lp); /opt/pos/venv with this package;
# fonts-wqy-microhei (Chinese characters on receipt pictures) when no font has them;
# /etc/pos/terminal.toml and /etc/pos/messages copied from config/ only when missing; /etc/pos/keys
# (0700, pos); the ECR bearer tokens (0600, pos) when missing; /var/lib/pos (0700, pos);
# the unit /etc/systemd/system/pos-terminal.service; the udev rule
# /etc/udev/rules.d/70-pos-terminal.rules from [udev] in the config (/dev/pos-scanner,
# /dev/pos-display, /dev/pos-printer); then daemon-reload, udev reload, enable, and start when the
# keys are in place (otherwise it says what to copy where).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
DESTDIR="${DESTDIR%/}"
POS_PYTHON_SET="${POS_PYTHON:+1}"
POS_PYTHON="${POS_PYTHON:-python3}"
NO_VENV="${POS_INSTALL_NO_VENV:-0}"
PIP_ARGS="${POS_PIP_ARGS:-}"
MODE=install
PURGE=0

UNIT_NAME=pos-terminal.service
VENV=/opt/pos/venv
ETC=/etc/pos
STATE=/var/lib/pos
UNIT_DIR=/etc/systemd/system
RULES=/etc/udev/rules.d/70-pos-terminal.rules
USER_NAME=pos

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) MODE=uninstall ;;
        --purge) PURGE=1 ;;
        --no-venv) NO_VENV=1 ;;
        --pip-args) [ $# -ge 2 ] || die "--pip-args needs a value"; PIP_ARGS="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[ "$PURGE" = 1 ] && [ "$MODE" != uninstall ] && die "--purge only goes with --uninstall"

REAL=1
[ -n "$DESTDIR" ] && REAL=0
if [ "$REAL" = 1 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo $0), or set DESTDIR=DIR to install into a folder"
fi
CHANGES=0
root() { printf '%s%s' "$DESTDIR" "$1"; }            # /etc/pos -> $DESTDIR/etc/pos
note() { echo "$*"; }
changed() { CHANGES=$((CHANGES + 1)); note "$*"; }

# A command that touches the real system: run it, or print it when installing into DESTDIR.
system() {
    if [ "$REAL" = 1 ]; then "$@"; else echo "would run: $*"; fi
}

# chown only when it differs (so a second run is silent), printed in DESTDIR mode.
own() {  # own USER:GROUP PATH
    if [ "$REAL" = 0 ]; then echo "would run: chown $1 $2"; return; fi
    if [ "$(stat -c %U:%G "$(root "$2")")" != "$1" ]; then chown "$1" "$(root "$2")"; changed "owner $1: $2"; fi
}

ensure_dir() {  # ensure_dir PATH MODE
    local p; p="$(root "$1")"
    if [ ! -d "$p" ]; then install -d -m "$2" "$p"; changed "created $1"
    elif [ "$(stat -c %a "$p")" != "$(printf '%o' "0$2")" ]; then chmod "$2" "$p"; changed "mode $2: $1"; fi
}

# Our own files (unit, rule): replaced when the content or mode differs.
put_file() {  # put_file SRC_FILE DEST MODE
    local d; d="$(root "$2")"
    if [ -f "$d" ] && cmp -s "$1" "$d"; then
        if [ "$(stat -c %a "$d")" != "$(printf '%o' "0$3")" ]; then chmod "$3" "$d"; changed "mode $3: $2"; fi
        return
    fi
    install -D -m "$3" "$1" "$d"; changed "installed $2"
}

# The technician's files (config, messages): copied only when missing, never overwritten.
put_new() {  # put_new SRC_FILE DEST MODE
    local d; d="$(root "$2")"
    if [ -e "$d" ]; then return; fi
    install -D -m "$3" "$1" "$d"; changed "installed $2 (edit it: it is never overwritten)"
}

pos_python() {
    if [ "$NO_VENV" = 1 ]; then echo "$POS_PYTHON"; else root "$VENV/bin/python"; fi
}

# --no-venv runs this package from $SRC: its interpreter must have the package's dependencies.
# Unless POS_PYTHON names one, take the checkout's own virtualenv (what 'make test' builds).
choose_no_venv_python() {
    [ "$NO_VENV" = 1 ] || return 0
    if [ -z "$POS_PYTHON_SET" ] && [ -x "$SRC/.venv/bin/python" ]; then
        POS_PYTHON="$SRC/.venv/bin/python"
    fi
    (cd "$SRC" && "$POS_PYTHON" -c 'import pos.ops.installer' 2>/dev/null) \
        || die "--no-venv: $POS_PYTHON cannot import this package and its dependencies: set POS_PYTHON to a" \
               "python that can (e.g. one where 'pip install -e $SRC' ran), or run 'make' in $SRC first"
}

do_install() {
    # 1. the service user
    if [ "$REAL" = 1 ]; then
        if ! getent passwd "$USER_NAME" >/dev/null; then
            useradd --system --user-group --home-dir "$STATE" --no-create-home \
                --shell /usr/sbin/nologin --comment "POS terminal" "$USER_NAME"
            changed "created user $USER_NAME"
        fi
        local g
        for g in dialout lp; do
            getent group "$g" >/dev/null || { groupadd --system "$g"; changed "created group $g"; }
            if ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx "$g"; then
                usermod -a -G "$g" "$USER_NAME"; changed "added $USER_NAME to $g"
            fi
        done
    else
        echo "would run: useradd --system --user-group --home-dir $STATE --no-create-home --shell /usr/sbin/nologin $USER_NAME"
        echo "would run: usermod -a -G dialout,lp $USER_NAME"
    fi

    # 2. the program
    if [ "$NO_VENV" = 1 ]; then
        note "skipping $VENV (--no-venv)"
    else
        "$POS_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "$POS_PYTHON is older than Python 3.11: set POS_PYTHON=python3.11"
        if [ ! -x "$(root "$VENV/bin/python")" ]; then
            mkdir -p "$(root /opt/pos)"
            "$POS_PYTHON" -m venv "$(root "$VENV")"; changed "created $VENV"
        fi
        # Reinstall only when the source changed: pip rewrites files on every run.
        local stamp want
        stamp="$(root "$VENV/.pos-source")"
        want="$(cd "$SRC" && find pyproject.toml pos devices -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
                | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
        if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
            # shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
            "$(root "$VENV/bin/pip")" install --quiet --disable-pip-version-check $PIP_ARGS "$SRC"
            echo "$want" > "$stamp"
            changed "installed pos-terminal into $VENV"
        fi
    fi

    # 2a. byte code: the unit runs with PYTHONDONTWRITEBYTECODE=1 (the service cannot write its own
    # tree), so a module without its .pyc would be compiled again on every start. pip compiles what it
    # installs; compileall makes sure (and covers --no-venv, which runs from $SRC). It only writes what
    # is missing or stale, so a second run changes nothing.
    if [ "$NO_VENV" = 1 ]; then
        "$POS_PYTHON" -m compileall -q -r 10 "$SRC/pos" "$SRC/devices" >/dev/null \
            || die "compileall failed in $SRC"
    else
        "$(root "$VENV/bin/python")" -m compileall -q -r 20 "$(root "$VENV")/lib" >/dev/null \
            || die "compileall failed in $VENV"
    fi
    note "byte code compiled (python -m compileall): a start compiles nothing"

    # 2b. a font with Chinese characters for receipt pictures (`pos receipt show --png`); DejaVu has none
    if ! fc-list ':lang=zh-cn' 2>/dev/null | grep -q .; then
        if [ "$REAL" = 1 ] && command -v apt-get >/dev/null; then
            if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                    --no-install-recommends fontconfig fonts-wqy-microhei; } >/dev/null 2>&1; then
                changed "installed fonts-wqy-microhei (Chinese characters on receipt pictures)"
            else
                note "could not install fonts-wqy-microhei: receipt pictures will draw Chinese text as boxes" \
                     "(pos doctor says so); install it by hand"
            fi
        else
            system apt-get install -y --no-install-recommends fontconfig fonts-wqy-microhei
        fi
    fi

    # 3. configuration, messages, keys, tokens (the technician's: never overwritten)
    ensure_dir "$ETC" 755
    put_new "$SRC/config/terminal.example.toml" "$ETC/terminal.toml" 640
    own "root:$USER_NAME" "$ETC/terminal.toml"
    if [ -d "$SRC/config/messages" ]; then
        ensure_dir "$ETC/messages" 755
        local f
        for f in "$SRC"/config/messages/*; do
            [ -f "$f" ] && put_new "$f" "$ETC/messages/$(basename "$f")" 644
        done
    else
        note "no config/messages in $SRC: skipping $ETC/messages"
    fi
    ensure_dir "$ETC/keys" 700
    own "$USER_NAME:$USER_NAME" "$ETC/keys"

    local py; py="$(pos_python)"
    local token
    while IFS= read -r token; do
        [ -n "$token" ] || continue
        case "$token" in "$DESTDIR"/*) token="${token#"$DESTDIR"}" ;; esac
        if [ ! -e "$(root "$token")" ]; then
            mkdir -p "$(dirname "$(root "$token")")"
            (umask 077; "$py" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$(root "$token")")
            changed "created $token (ECR bearer token for the till, 0600)"
        fi
        own "$USER_NAME:$USER_NAME" "$token"
    done < <("$py" -m pos.ops.installer secret-files --config "$(root "$ETC/terminal.toml")")

    ensure_dir "$STATE" 700
    own "$USER_NAME:$USER_NAME" "$STATE"

    # 4. the unit and the udev rule (ours: replaced when they differ)
    local unit_src="$SRC/systemd/$UNIT_NAME"
    put_file "$unit_src" "$UNIT_DIR/$UNIT_NAME" 644
    local tmp; tmp="$(mktemp)"
    trap 'rm -f "$tmp"' RETURN
    "$py" -m pos.ops.installer udev-rules --config "$(root "$ETC/terminal.toml")" > "$tmp" \
        || die "cannot compute the udev rule: fix $ETC/terminal.toml (pos doctor --config $ETC/terminal.toml)"
    put_file "$tmp" "$RULES" 644

    # 5. tell systemd and udev
    system udevadm control --reload
    system udevadm trigger --subsystem-match=tty --subsystem-match=usbmisc --subsystem-match=usb
    system systemctl daemon-reload
    system systemctl enable "$UNIT_NAME"
    if [ "$REAL" = 1 ]; then
        if "$(root "$VENV/bin/pos")" config check --require-keys "$ETC/terminal.toml" >/dev/null 2>&1; then
            # restart picks up a new version on upgrade; start on first install
            systemctl restart "$UNIT_NAME"
            note "started $UNIT_NAME (systemctl status $UNIT_NAME; journalctl -u pos-terminal)"
        else
            note "not started yet: edit $ETC/terminal.toml, copy the keys into $ETC/keys (chown pos, chmod 600 the private key),"
            note "then run: pos doctor --config $ETC/terminal.toml && systemctl start $UNIT_NAME"
        fi
    else
        echo "would run: systemctl restart $UNIT_NAME (if 'pos config check --require-keys' passes)"
    fi
    note "install: $CHANGES change(s)"
}

remove() {  # remove PATH (file or tree), reported when it existed
    if [ -e "$(root "$1")" ] || [ -L "$(root "$1")" ]; then rm -rf "$(root "$1")"; changed "removed $1"; fi
}

do_uninstall() {
    system systemctl disable --now "$UNIT_NAME"
    remove "$UNIT_DIR/$UNIT_NAME"
    remove "$RULES"
    remove /opt/pos
    system systemctl daemon-reload
    system udevadm control --reload
    if [ "$PURGE" = 1 ]; then
        remove "$ETC"
        remove "$STATE"
        if [ "$REAL" = 1 ]; then
            if getent passwd "$USER_NAME" >/dev/null; then userdel "$USER_NAME"; changed "removed user $USER_NAME"; fi
        else
            echo "would run: userdel $USER_NAME"
        fi
    else
        note "kept $ETC (config, keys, tokens) and $STATE (journal); --uninstall --purge removes them"
    fi
    note "uninstall: $CHANGES change(s)"
}

if [ "$MODE" = install ]; then choose_no_venv_python; do_install; else do_uninstall; fi
