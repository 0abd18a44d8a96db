#!/usr/bin/env bash
# Install, start and stop a private Postfix instance for mailtape's CI.
#
# Usage: ci/postfix.sh install|start|stop|restart|status|env
#
# The instance is self-contained: everything lives in $MAILTAPE_POSTFIX_DIR
# (default /tmp/mailtape-ci/postfix, wiped by every `start`): etc/ (main.cf,
# master.cf, recipient maps), queue/, data/, cert.pem/key.pem and postfix.log.
# It runs as `postfix -c DIR/etc`, so it never touches /etc/postfix or a system
# MTA on port 25. (queue/ and data/ sit beside etc/, not in it: `postfix check`
# wants everything under the config directory owned by root.)
# It listens on 127.0.0.1 only:
#
#   SMTP        $MAILTAPE_POSTFIX_SMTP_PORT        (10025)  STARTTLS offered, AUTH not offered
#   submission  $MAILTAPE_POSTFIX_SUBMISSION_PORT  (10587)  STARTTLS required, then AUTH PLAIN/LOGIN
#
# It needs the private Dovecot of ci/dovecot.sh running (start that first):
# mail for alice@ and bob@example.test goes to Dovecot's LMTP listener
# ($MAILTAPE_POSTFIX_LMTP_PORT, default 10024 = MAILTAPE_DOVECOT_LMTP_PORT) and
# submission AUTH is checked by Dovecot's auth service
# ($MAILTAPE_POSTFIX_AUTH_PORT, default 10026 = MAILTAPE_DOVECOT_AUTH_PORT), so
# the accounts are Dovecot's: alice / alicepw, bob / bobpw.
#
# Behaviour the scenarios rely on (ci/NOTES.md has the full survey):
#   - RCPT to any other example.test user: 550 5.1.1 (User unknown);
#     postmaster@example.test is an alias of alice (RFC 5321 4.5.1).
#   - RCPT to another domain: 554 5.7.1 Relay access denied, unless the
#     session authenticated on submission; such relayed mail is accepted and
#     then discarded (CI must not send mail anywhere).
#   - SIZE limit $MAILTAPE_POSTFIX_SIZE_LIMIT bytes (10 MiB).
#   - no DNS, no reverse lookups, no error sleeps, delivery right after DATA.
#
#   eval "$(ci/postfix.sh env)"   # sets MAILTAPE_POSTFIX_SMTP=smtp://127.0.0.1:10025 ...
set -euo pipefail

DIR="${MAILTAPE_POSTFIX_DIR:-/tmp/mailtape-ci/postfix}"
SMTP_PORT="${MAILTAPE_POSTFIX_SMTP_PORT:-10025}"
SUBMISSION_PORT="${MAILTAPE_POSTFIX_SUBMISSION_PORT:-10587}"
LMTP_PORT="${MAILTAPE_POSTFIX_LMTP_PORT:-${MAILTAPE_DOVECOT_LMTP_PORT:-10024}}"
AUTH_PORT="${MAILTAPE_POSTFIX_AUTH_PORT:-${MAILTAPE_DOVECOT_AUTH_PORT:-10026}}"
# Large enough for any scenario message, small enough to test "SIZE over limit" cheaply.
SIZE_LIMIT="${MAILTAPE_POSTFIX_SIZE_LIMIT:-10485760}"
# "yes": RFC 5321-strict smtpd (HELO/EHLO required, <> around envelope
# addresses, bare LF rejected). Default: Postfix's own (lenient) defaults.
STRICT="${MAILTAPE_POSTFIX_STRICT:-no}"
HOST=127.0.0.1
DOMAIN=example.test
MYHOSTNAME="mx.$DOMAIN"
# Bounded wait for startup and shutdown, in seconds.
WAIT_SECONDS=20

CONF_DIR="$DIR/etc"
CONF_MAIN="$CONF_DIR/main.cf"
LOG="$DIR/postfix.log"
# Postfix's master writes its pid here (queue_directory/pid/master.pid).
PIDFILE="$DIR/queue/pid/master.pid"

die() {
    echo "postfix.sh: $*" >&2
    exit 1
}

log() {
    echo "postfix.sh: $*" >&2
}

# --- install ---------------------------------------------------------------

# Stops a system Postfix if the package's postinst started one (it normally
# cannot: "No configuration" leaves no /etc/postfix/main.cf). It is not ours,
# so only the service manager touches it.
stop_system_postfix() {
    local pidfile=/var/spool/postfix/pid/master.pid pid
    [ -r "$pidfile" ] || return 0
    pid="$(tr -d ' ' <"$pidfile" 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        return 0
    fi
    log "the package started a system postfix (pid $pid); stopping it"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postfix 2>/dev/null; then
        systemctl stop postfix || true
        systemctl disable postfix >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service postfix stop || true
    fi
}

cmd_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v postfix >/dev/null 2>&1 \
        || ! dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q '^install ok installed$'; then
        # "No configuration": the postinst writes no main.cf and starts nothing on port 25.
        debconf-set-selections <<EOF
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string $MYHOSTNAME
EOF
        apt-get update -qq
        apt-get install -y -qq --no-remove postfix >/dev/null
    fi
    command -v openssl >/dev/null 2>&1 || apt-get install -y -qq --no-remove openssl >/dev/null
    stop_system_postfix
    # -d: built-in defaults; plain postconf wants the main.cf that "No configuration" omits.
    postconf -d mail_version
}

# --- start -----------------------------------------------------------------

write_config() {
    mkdir -p "$CONF_DIR" "$DIR/queue" "$DIR/data"
    chmod 755 "$DIR"
    # `postfix check` makes the queue's subdirectories; the top belongs to
    # root, the data directory to the mail owner.
    chown root:root "$DIR/queue"
    chown postfix:postfix "$DIR/data"
    chmod 700 "$DIR/data"

    openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
        -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "extendedKeyUsage=serverAuth" \
        -keyout "$DIR/key.pem" -out "$DIR/cert.pem" >/dev/null 2>&1 \
        || die "openssl could not make the certificate"
    chmod 600 "$DIR/key.pem"

    # texthash maps need no postmap run and are read at process start.
    cat >"$CONF_DIR/vmailbox" <<EOF
alice@$DOMAIN OK
bob@$DOMAIN OK
EOF
    cat >"$CONF_DIR/valias" <<EOF
postmaster@$DOMAIN alice@$DOMAIN
EOF
    : >"$CONF_DIR/nolocal"

    cat >"$CONF_MAIN" <<EOF
# Generated by ci/postfix.sh; rewritten on every start.
compatibility_level = 3.6
config_directory = $CONF_DIR
queue_directory = $DIR/queue
data_directory = $DIR/data
# One instance among possibly several: keep the syslog name apart.
syslog_name = postfix-mailtape-$SMTP_PORT
maillog_file = $LOG
maillog_file_prefixes = $DIR

myhostname = $MYHOSTNAME
mydomain = $DOMAIN
myorigin = $DOMAIN
# No local delivery: every accepted recipient is virtual (Dovecot over LMTP).
mydestination =
# Nobody relays by address, not even loopback: relaying needs AUTH on submission.
mynetworks =
inet_interfaces = $HOST
inet_protocols = ipv4
biff = no
append_dot_mydomain = no

virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$CONF_DIR/vmailbox
virtual_alias_maps = texthash:$CONF_DIR/valias
virtual_transport = lmtp:inet:$HOST:$LMTP_PORT
# Authenticated relaying is accepted but nothing leaves the machine.
default_transport = discard:mailtape CI does not relay
relay_transport = discard:mailtape CI does not relay
# Address literals of our own address (x@[127.0.0.1]) are "local" even with an
# empty mydestination: reject them at RCPT (empty map) and never deliver locally.
local_recipient_maps = texthash:$CONF_DIR/nolocal
local_transport = error:5.1.1 mailtape CI has no local mailboxes
alias_maps =
alias_database =

smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
message_size_limit = $SIZE_LIMIT
mailbox_size_limit = 0

# Deterministic and fast: no DNS, no reverse lookups, no tarpitting.
smtp_dns_support_level = disabled
lmtp_host_lookup = native
smtp_host_lookup = native
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 1000
in_flow_delay = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
# Parallel scenario runs open many sessions at once.
default_process_limit = 200
smtpd_client_connection_count_limit = 0

smtpd_tls_security_level = may
smtpd_tls_cert_file = $DIR/cert.pem
smtpd_tls_key_file = $DIR/key.pem
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes

# AUTH is off on the SMTP port; submission turns it on (master.cf).
smtpd_sasl_auth_enable = no
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:$HOST:$AUTH_PORT
smtpd_sasl_authenticated_header = yes
EOF
    if [ "$STRICT" = yes ]; then
        cat >>"$CONF_MAIN" <<EOF

# MAILTAPE_POSTFIX_STRICT=yes
smtpd_helo_required = yes
strict_rfc821_envelopes = yes
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =
EOF
    fi

    # chroot "n" everywhere: a chroot jail would need copies of /etc files.
    cat >"$CONF_DIR/master.cf" <<EOF
# Generated by ci/postfix.sh; rewritten on every start.
# service type  private unpriv  chroot  wakeup  maxproc command + args
$HOST:$SMTP_PORT inet n - n - - smtpd
$HOST:$SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix-mailtape-$SMTP_PORT/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    chmod 644 "$CONF_MAIN" "$CONF_DIR/master.cf" "$CONF_DIR/vmailbox" "$CONF_DIR/valias" "$CONF_DIR/nolocal"
}

# Prints the pid of our running master, or nothing.
running_pid() {
    local pid=""
    if [ -r "$PIDFILE" ]; then
        pid="$(tr -d ' \n' <"$PIDFILE" 2>/dev/null || true)"
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

# Succeeds once host:port greets with 220 (then says QUIT). A subshell:
# bash exits the whole shell when `exec`'s redirection fails (connection refused).
smtp_greets() (
    local line ok=1
    exec 3<>"/dev/tcp/$HOST/$1" || exit 1
    if IFS= read -r -t 5 line <&3; then
        case "$line" in
            220" "*) ok=0 ;;
        esac
    fi
    printf 'QUIT\r\n' >&3 2>/dev/null || true
    exit "$ok"
) 2>/dev/null

cmd_start() {
    command -v postfix >/dev/null 2>&1 || die "postfix is not installed (run: $0 install)"
    cmd_stop
    case "$DIR" in
        /|"") die "refusing to use '$DIR' as MAILTAPE_POSTFIX_DIR" ;;
    esac
    rm -rf "$DIR"
    mkdir -p "$DIR"
    write_config
    # `check` creates the queue subdirectories with Postfix's own owners and
    # modes (post-install create-missing) and vets the configuration. Not
    # `set-permissions`: that also rewrites the modes of the system's binaries.
    postfix -c "$CONF_DIR" check </dev/null >"$DIR/check.out" 2>&1 \
        || die "configuration check failed: $(cat "$DIR/check.out")"

    # The master daemonizes; it must not hold the caller's stdio open.
    postfix -c "$CONF_DIR" start </dev/null >"$DIR/start.out" 2>&1 \
        || die "postfix failed to start: $(cat "$DIR/start.out"); see $LOG"

    local deadline=$((SECONDS + WAIT_SECONDS))
    until smtp_greets "$SMTP_PORT" && smtp_greets "$SUBMISSION_PORT"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$LOG" >&2 2>/dev/null || true
            die "SMTP on $HOST:$SMTP_PORT/$SUBMISSION_PORT did not greet with 220 within $WAIT_SECONDS s"
        fi
        sleep 0.1
    done
    local pid
    pid="$(running_pid)"
    [ -n "$pid" ] || die "no live master pid in $PIDFILE"
    log "postfix running (pid $pid), SMTP $HOST:$SMTP_PORT, submission $HOST:$SUBMISSION_PORT, dir $DIR"
}

# --- stop / status / env ---------------------------------------------------

cmd_stop() {
    local pid
    pid="$(running_pid)"
    [ -n "$pid" ] || return 0
    if [ -r "$CONF_MAIN" ]; then
        postfix -c "$CONF_DIR" stop </dev/null >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    else
        kill "$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + WAIT_SECONDS))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "postfix (pid $pid) still running after $WAIT_SECONDS s"
        fi
        sleep 0.1
    done
    log "postfix (pid $pid) stopped"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        echo "running (pid $pid) dir $DIR smtp $HOST:$SMTP_PORT submission $HOST:$SUBMISSION_PORT"
    else
        echo "stopped"
        return 3
    fi
}

cmd_env() {
    cat <<EOF
export MAILTAPE_POSTFIX_DIR=$DIR
export MAILTAPE_POSTFIX_CONF=$CONF_DIR
export MAILTAPE_POSTFIX_CA=$DIR/cert.pem
export MAILTAPE_POSTFIX_LOG=$LOG
export MAILTAPE_POSTFIX_SMTP=smtp://$HOST:$SMTP_PORT
export MAILTAPE_POSTFIX_SMTP_STARTTLS=smtp+starttls://$HOST:$SMTP_PORT
export MAILTAPE_POSTFIX_SUBMISSION=smtp+starttls://alice:alicepw@$HOST:$SUBMISSION_PORT
export MAILTAPE_POSTFIX_SUBMISSION_BOB=smtp+starttls://bob:bobpw@$HOST:$SUBMISSION_PORT
export MAILTAPE_POSTFIX_SIZE_LIMIT=$SIZE_LIMIT
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
