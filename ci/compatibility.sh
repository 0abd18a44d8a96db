#!/usr/bin/env bash
# Compare the bundled reference server with the CI Dovecot + Postfix over the whole suite
# and write the Markdown grid (and, if asked, the HTML page).
#
# Usage: ci/compatibility.sh MD_FILE [HTML_FILE]
#   bash ci/compatibility.sh docs/compatibility.md            # the living table in docs/
#   bash ci/compatibility.sh target/reports/compat.md target/reports/compat.html   # CI
#
# Needs the servers of ci/dovecot.sh and ci/postfix.sh running (`start`); reads their `env`.
# MAILTAPE_BIN is the mailtape binary (default ./target/release/mailtape, built if missing).
# Exit status: mailtape compare's (0: every server passed every scenario, expected
# failures included; 1: a failure; 2: usage).
set -euo pipefail
cd "$(dirname "$0")/.."

md=${1:?usage: ci/compatibility.sh MD_FILE [HTML_FILE]}
html=${2:-}
bin=${MAILTAPE_BIN:-./target/release/mailtape}
if [ ! -x "$bin" ]; then
  cargo build --release --locked
fi

eval "$(bash ci/dovecot.sh env)"
eval "$(bash ci/postfix.sh env)"
mkdir -p target/reports "$(dirname "$md")"
# One PEM bundle trusts both self-signed certificates (Dovecot's for STLS and STARTTLS,
# Postfix's for STARTTLS).
cat "$MAILTAPE_DOVECOT_CA" "$MAILTAPE_POSTFIX_CA" > target/reports/compat-ca.pem

# --jobs 1: Dovecot 2.3 races on concurrent CREATE/DELETE of one user (see .ci/run).
command=(compare scenarios
  --target ref=reference
  --target "dovecot=$MAILTAPE_DOVECOT_IMAP"
  --target "dovecot=$MAILTAPE_DOVECOT_POP3"
  --target "dovecot=$MAILTAPE_POSTFIX_SMTP"
  --account bob:bobpw --jobs 1 --ca-file target/reports/compat-ca.pem)
reports=(--report "$md")
if [ -n "$html" ]; then
  reports+=(--report "$html")
fi

status=0
"$bin" "${command[@]}" "${reports[@]}" --quiet || status=$?
if [ -f "$md" ]; then
  # The first line says how the file was made, in a form that can be run again.
  {
    # shellcheck disable=SC2016 # the variables are meant literally: ci/*.sh env sets them.
    printf '%s\n\n' '> Produced by `bash ci/compatibility.sh docs/compatibility.md` with the CI servers running (`bash ci/dovecot.sh start && bash ci/postfix.sh start`). It runs: `mailtape compare scenarios --target ref=reference --target "dovecot=$MAILTAPE_DOVECOT_IMAP" --target "dovecot=$MAILTAPE_DOVECOT_POP3" --target "dovecot=$MAILTAPE_POSTFIX_SMTP" --account bob:bobpw --jobs 1 --ca-file <Dovecot CA + Postfix CA> --report docs/compatibility.md`. Do not edit by hand.'
    cat "$md"
  } > "$md.new"
  mv "$md.new" "$md"
fi
exit "$status"
