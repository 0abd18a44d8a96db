#!/usr/bin/env bash
# Install, start and stop a private Dovecot instance for mailtape's CI.
#
# Usage: ci/dovecot.sh install|start|stop|restart|status|env
#
# The instance is self-contained: its config, certificate, users, mail,
# sockets (base_dir), state and logs all live in $MAILTAPE_DOVECOT_DIR
# (default /tmp/mailtape-ci/dovecot, wiped by every `start`). It listens on
# 127.0.0.1 only, on high ports, so it never collides with a system Dovecot:
#
#   IMAP  $MAILTAPE_DOVECOT_IMAP_PORT  (10143)   IMAPS $MAILTAPE_DOVECOT_IMAPS_PORT (10993)
#   POP3  $MAILTAPE_DOVECOT_POP3_PORT  (10110)   POP3S $MAILTAPE_DOVECOT_POP3S_PORT (10995)
#   LMTP  $MAILTAPE_DOVECOT_LMTP_PORT  (10024)
#   SASL  $MAILTAPE_DOVECOT_AUTH_PORT  (10026)   auth-client protocol, for Postfix (ci/postfix.sh)
#
# MAILTAPE_DOVECOT_POP3_LOCK=yes locks the maildrop during a POP3 session (RFC 1939);
# MAILTAPE_DOVECOT_AUTH_PENALTY=yes keeps Dovecot's per-IP failed-login penalty.
#
# MAILTAPE_DOVECOT_PREFIX=INBOX. makes the personal namespace prefix "INBOX." (a second
# instance with its own MAILTAPE_DOVECOT_DIR and ports can run beside the first).
#
# Accounts (domain example.test; `alice` and `alice@example.test` both log in):
#   alice / alicepw, bob / bobpw
# Mail is stored as maildir with Dovecot's default Maildir++ layout, so the
# hierarchy separator is "." (the reference server uses "/"; the harness
# discovers it with LIST "" "").
#
#   eval "$(ci/dovecot.sh env)"   # sets MAILTAPE_DOVECOT_IMAP=imap://alice:alicepw@127.0.0.1:10143 ...
set -euo pipefail

DIR="${MAILTAPE_DOVECOT_DIR:-/tmp/mailtape-ci/dovecot}"
IMAP_PORT="${MAILTAPE_DOVECOT_IMAP_PORT:-10143}"
IMAPS_PORT="${MAILTAPE_DOVECOT_IMAPS_PORT:-10993}"
POP3_PORT="${MAILTAPE_DOVECOT_POP3_PORT:-10110}"
POP3S_PORT="${MAILTAPE_DOVECOT_POP3S_PORT:-10995}"
LMTP_PORT="${MAILTAPE_DOVECOT_LMTP_PORT:-10024}"
# Postfix's smtpd authenticates submission clients through this (smtpd_sasl_type = dovecot).
AUTH_PORT="${MAILTAPE_DOVECOT_AUTH_PORT:-10026}"
# Personal namespace prefix: empty by default; "INBOX." gives a Courier-style server whose
# mailboxes all live under INBOX (the harness discovers it with NAMESPACE).
PREFIX="${MAILTAPE_DOVECOT_PREFIX:-}"
HOST=127.0.0.1
DOMAIN=example.test
# Mail processes must not run as root (Dovecot refuses uid 0).
MAIL_USER="${MAILTAPE_DOVECOT_MAIL_USER:-mailtape}"
# Bounded wait for startup and shutdown, in tenths of a second.
WAIT_TENTHS=200

CONF="$DIR/dovecot.conf"
PIDFILE="$DIR/dovecot.pid"
LOG="$DIR/dovecot.log"

die() {
    echo "dovecot.sh: $*" >&2
    exit 1
}

log() {
    echo "dovecot.sh: $*" >&2
}

# --- install ---------------------------------------------------------------

# Stops the package's own Dovecot if its postinst started one. It is not ours,
# so we only use the service manager (or Dovecot's own `stop` against the
# package config, which signals the pid in the package's base_dir). Our
# instance does not depend on this: it uses other ports and its own base_dir.
stop_system_dovecot() {
    if [ ! -e /run/dovecot/master.pid ]; then
        return 0
    fi
    local pid
    pid="$(cat /run/dovecot/master.pid 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        return 0
    fi
    log "the package started a system dovecot (pid $pid); stopping it"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
        systemctl stop dovecot || true
        systemctl disable dovecot >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service dovecot stop || true
    fi
    if kill -0 "$pid" 2>/dev/null; then
        dovecot -c /etc/dovecot/dovecot.conf stop || true
    fi
}

cmd_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v dovecot >/dev/null 2>&1 \
        || ! dpkg-query -W -f='${Status}' dovecot-imapd dovecot-pop3d dovecot-lmtpd 2>/dev/null \
            | grep -q '^\(install ok installed\)\{3\}$'; then
        apt-get update -qq
        apt-get install -y -qq --no-remove dovecot-imapd dovecot-pop3d dovecot-lmtpd >/dev/null
    fi
    command -v openssl >/dev/null 2>&1 || {
        apt-get install -y -qq --no-remove openssl >/dev/null
    }
    stop_system_dovecot
    dovecot --version
}

# --- start -----------------------------------------------------------------

ensure_mail_user() {
    if ! id -u "$MAIL_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$MAIL_USER"
    fi
}

write_config() {
    local uid gid
    uid="$(id -u "$MAIL_USER")"
    gid="$(id -g "$MAIL_USER")"

    mkdir -p "$DIR/run" "$DIR/state" "$DIR/home"
    chmod 755 "$DIR"

    openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
        -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "extendedKeyUsage=serverAuth" \
        -keyout "$DIR/key.pem" -out "$DIR/cert.pem" >/dev/null 2>&1 \
        || die "openssl could not make the certificate"
    chmod 600 "$DIR/key.pem"

    # passwd-file: user:password:uid:gid:gecos:home:shell:extra
    : >"$DIR/users"
    local u
    for u in alice bob; do
        printf '%s@%s:{PLAIN}%spw:%s:%s::%s/home/%s/%s::\n' \
            "$u" "$DOMAIN" "$u" "$uid" "$gid" "$DIR" "$DOMAIN" "$u" >>"$DIR/users"
        mkdir -p "$DIR/home/$DOMAIN/$u"
    done
    # Test credentials only; the auth process may run unprivileged.
    chmod 644 "$DIR/users"
    chown -R "$uid:$gid" "$DIR/home"

    local dh=""
    if [ -r /usr/share/dovecot/dh.pem ]; then
        dh="ssl_dh = </usr/share/dovecot/dh.pem"
    fi

    # Every test client is 127.0.0.1: anvil's per-IP auth penalty (up to 15 s,
    # applied before the passdb lookup, so to good logins too) would let one
    # scenario's failed logins slow every later login. Failed logins still
    # wait auth_failure_delay (2 s). MAILTAPE_DOVECOT_AUTH_PENALTY=yes keeps it.
    local penalty_block=""
    if [ "${MAILTAPE_DOVECOT_AUTH_PENALTY:-no}" != yes ]; then
        penalty_block="service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}"
    fi

    cat >"$CONF" <<EOF
# Generated by ci/dovecot.sh; rewritten on every start.
base_dir = $DIR/run
state_dir = $DIR/state
instance_name = mailtape-dovecot-$IMAP_PORT
log_path = $LOG
info_log_path = $LOG
listen = $HOST
protocols = imap pop3 lmtp

ssl = yes
ssl_cert = <$DIR/cert.pem
ssl_key = <$DIR/key.pem
$dh

# Tests log in with LOGIN over plain loopback.
disable_plaintext_auth = no
auth_mechanisms = plain login
# Makes "alice" and "alice@example.test" the same account.
auth_default_realm = $DOMAIN
auth_verbose = yes

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $DIR/users
}

first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
mail_uid = $uid
mail_gid = $gid
# Default Maildir++ layout: hierarchy separator ".".
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  prefix = $PREFIX
  separator = .
}
postmaster_address = postmaster@$DOMAIN

# Parallel scenario runs and mailtape stress open many connections at once.
default_process_limit = 512
default_client_limit = 4096

protocol imap {
  # Parallel scenario runs open many sessions per account.
  mail_max_userip_connections = 200
}
protocol pop3 {
  mail_max_userip_connections = 200
  # Dovecot's default lets two POP3 sessions share a maildrop (no RFC 1939 lock);
  # MAILTAPE_DOVECOT_POP3_LOCK=yes makes a second session fail with -ERR [IN-USE].
  pop3_lock_session = ${MAILTAPE_DOVECOT_POP3_LOCK:-no}
}

service imap-login {
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = $IMAPS_PORT
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = $POP3S_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = $HOST
    port = $LMTP_PORT
  }
}
$penalty_block
# SASL for ci/postfix.sh: an inet listener whose name is not auth-master/auth-userdb speaks
# the auth-client protocol that Postfix's smtpd_sasl_type = dovecot expects.
service auth {
  inet_listener auth-client {
    address = $HOST
    port = $AUTH_PORT
  }
}
EOF
}

# Prints the pid of our running master, or nothing.
running_pid() {
    local pid=""
    if [ -r "$PIDFILE" ]; then
        pid="$(cat "$PIDFILE")"
    elif [ -r "$DIR/run/master.pid" ]; then
        pid="$(cat "$DIR/run/master.pid")"
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

# Opens fd 3 to host:port; fails fast if nothing listens.
connect() {
    exec 3<>"/dev/tcp/$HOST/$1"
}

# Greeting, LOGIN, LOGOUT over plain IMAP; succeeds only on a tagged OK.
imap_login_works() {
    local line ok=1
    connect "$IMAP_PORT" 2>/dev/null || return 1
    IFS= read -r -t 5 line <&3 || { exec 3<&-; return 1; }
    case "$line" in
        "* OK"*) ;;
        *) exec 3<&-; return 1 ;;
    esac
    printf 'a1 LOGIN alice alicepw\r\n' >&3
    while IFS= read -r -t 5 line <&3; do
        case "$line" in
            "a1 OK"*) ok=0; break ;;
            "a1 "*) break ;;
        esac
    done
    printf 'a2 LOGOUT\r\n' >&3 2>/dev/null || true
    exec 3<&-
    return "$ok"
}

cmd_start() {
    command -v dovecot >/dev/null 2>&1 || die "dovecot is not installed (run: $0 install)"
    cmd_stop
    case "$DIR" in
        /|"") die "refusing to use '$DIR' as MAILTAPE_DOVECOT_DIR" ;;
    esac
    rm -rf "$DIR"
    mkdir -p "$DIR"
    ensure_mail_user
    write_config
    dovecot -c "$CONF" -n >/dev/null 2>"$DIR/config-check.err" \
        || die "config rejected: $(cat "$DIR/config-check.err")"

    # The master daemonizes; it must not hold the caller's stdio open.
    dovecot -c "$CONF" </dev/null >/dev/null 2>&1 || die "dovecot failed to start; see $LOG"

    # Bounded by wall time: one probe may itself wait up to 5 s for a reply.
    local deadline=$((SECONDS + WAIT_TENTHS / 10))
    until imap_login_works; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$LOG" >&2 2>/dev/null || true
            die "IMAP on $HOST:$IMAP_PORT did not accept a LOGIN within $((WAIT_TENTHS / 10)) s"
        fi
        sleep 0.1
    done
    [ -r "$DIR/run/master.pid" ] || die "no master.pid in $DIR/run"
    cp "$DIR/run/master.pid" "$PIDFILE"
    log "dovecot running (pid $(cat "$PIDFILE")), IMAP $HOST:$IMAP_PORT, dir $DIR"
}

# --- stop / status / env ---------------------------------------------------

cmd_stop() {
    local pid
    pid="$(running_pid)"
    if [ -z "$pid" ]; then
        rm -f "$PIDFILE"
        return 0
    fi
    if [ -r "$CONF" ]; then
        dovecot -c "$CONF" stop </dev/null >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    else
        kill "$pid" 2>/dev/null || true
    fi
    local i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -ge "$WAIT_TENTHS" ]; then
            die "dovecot (pid $pid) still running after $((WAIT_TENTHS / 10)) s"
        fi
        sleep 0.1
    done
    rm -f "$PIDFILE"
    log "dovecot (pid $pid) stopped"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        echo "running (pid $pid) dir $DIR imap $HOST:$IMAP_PORT"
    else
        echo "stopped"
        return 3
    fi
}

cmd_env() {
    cat <<EOF
export MAILTAPE_DOVECOT_DIR=$DIR
export MAILTAPE_DOVECOT_CA=$DIR/cert.pem
export MAILTAPE_DOVECOT_IMAP=imap://alice:alicepw@$HOST:$IMAP_PORT
export MAILTAPE_DOVECOT_IMAP_BOB=imap://bob:bobpw@$HOST:$IMAP_PORT
export MAILTAPE_DOVECOT_IMAP_STARTTLS=imap+starttls://alice:alicepw@$HOST:$IMAP_PORT
export MAILTAPE_DOVECOT_IMAPS=imaps://alice:alicepw@$HOST:$IMAPS_PORT
export MAILTAPE_DOVECOT_POP3=pop3://alice:alicepw@$HOST:$POP3_PORT
export MAILTAPE_DOVECOT_POP3_STARTTLS=pop3+starttls://alice:alicepw@$HOST:$POP3_PORT
export MAILTAPE_DOVECOT_POP3S=pop3s://alice:alicepw@$HOST:$POP3S_PORT
export MAILTAPE_DOVECOT_LMTP=lmtp://$HOST:$LMTP_PORT
export MAILTAPE_DOVECOT_AUTH=inet:$HOST:$AUTH_PORT
EOF
}

main() {
    case "${1:-}" in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_start ;;
        status) cmd_status ;;
        env) cmd_env ;;
        *)
            echo "usage: $0 install|start|stop|restart|status|env" >&2
            exit 2
            ;;
    esac
}

main "$@"
