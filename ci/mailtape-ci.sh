#!/usr/bin/env bash
# mailtape-ci.sh - run mailtape's suites against YOUR mail server in any CI system.
#
# One file, configured by environment variables. It builds mailtape (or uses a given
# binary), runs the scenarios for every protocol you give a URL for, writes JUnit, JSON
# and (optionally) HTML/Markdown comparison reports, and exits with mailtape's status:
#   0 nothing unexpected failed, 1 a scenario failed or an expected failure passed,
#   2 configuration error (also: no URL given, mailtape cannot be built).
#
# The server under test needs the test accounts the scenarios use: alice/alicepw (the
# user in the URLs) and bob/bobpw (MAILTAPE_ACCOUNTS), in a domain of your choice.
#
# Environment:
#   MAILTAPE_IMAP          imap://alice:alicepw@host:143 (or imaps://, imap+starttls://)
#   MAILTAPE_POP3          pop3://alice:alicepw@host:110 (or pop3s://, pop3+starttls://)
#   MAILTAPE_SMTP          smtp://host:25 (or smtps://, smtp+starttls://user:pass@host:587)
#                          At least one of the three is required.
#   MAILTAPE_NAME          name of the server in reports and expected-failure keys
#                          (default: server)
#   MAILTAPE_ACCOUNTS      more accounts, space-separated user:pass (default: bob:bobpw)
#   MAILTAPE_SCENARIOS     scenario files/directories, space-separated (default: imap/,
#                          pop3/, smtp/ for the protocols given, and cross/ when IMAP and
#                          another protocol are given, all under mailtape's scenarios/)
#   MAILTAPE_KNOWN_FAILURES  file of known failures, `SCENARIO [TARGET] -- REASON` lines
#   MAILTAPE_CA_FILE       PEM file with the CA that signed the server's certificate
#   MAILTAPE_INSECURE      1: do not verify the server's certificate
#   MAILTAPE_STRICT        1: SHOULD-level findings fail too
#   MAILTAPE_JOBS          scenarios at once (default 1: some servers race on one user's
#                          concurrent CREATE/DELETE; raise it if yours does not)
#   MAILTAPE_TIMEOUT       seconds one step waits for the server (default 10)
#   MAILTAPE_REPORT_DIR    where reports go (default: mailtape-reports)
#   MAILTAPE_COMPARE       1 (default): also compare the server with mailtape's bundled
#                          reference server into compare.html and compare.md (informative:
#                          does not change the exit status); 0 to skip
#   MAILTAPE_BIN           an existing mailtape binary (default: build one with cargo from
#                          MAILTAPE_SRC)
#   MAILTAPE_SRC           mailtape's source tree (default: the tree this script is in)
#
# Example (GitHub Actions / GitLab CI templates beside this file use it the same way):
#   MAILTAPE_IMAP=imap://alice:alicepw@127.0.0.1:143 MAILTAPE_SMTP=smtp://127.0.0.1:25 \
#     bash ci/mailtape-ci.sh
set -uo pipefail

say() { printf 'mailtape-ci: %s\n' "$*" >&2; }

src="${MAILTAPE_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
imap="${MAILTAPE_IMAP:-}"
pop3="${MAILTAPE_POP3:-}"
smtp="${MAILTAPE_SMTP:-}"
name="${MAILTAPE_NAME:-server}"
reports="${MAILTAPE_REPORT_DIR:-mailtape-reports}"

if [[ -z "$imap$pop3$smtp" ]]; then
  say "set at least one of MAILTAPE_IMAP, MAILTAPE_POP3, MAILTAPE_SMTP (see the top of $0)"
  exit 2
fi
if [[ "$name" == *[!A-Za-z0-9._-]* ]]; then
  say "MAILTAPE_NAME may only hold letters, digits, '.', '_' and '-': $name"
  exit 2
fi

bin="${MAILTAPE_BIN:-}"
if [[ -z "$bin" ]]; then
  if ! command -v cargo >/dev/null; then
    say "cargo not found: install Rust (https://rustup.rs) or set MAILTAPE_BIN"
    exit 2
  fi
  say "building mailtape in $src"
  if ! (cd "$src" && cargo build --release --locked --quiet); then
    say "cargo build failed"
    exit 2
  fi
  bin="${CARGO_TARGET_DIR:-$src/target}/release/mailtape"
fi
if [[ ! -x "$bin" ]]; then
  say "not an executable mailtape binary: $bin"
  exit 2
fi

scenarios=()
if [[ -n "${MAILTAPE_SCENARIOS:-}" ]]; then
  read -r -a scenarios <<<"$MAILTAPE_SCENARIOS"
else
  [[ -n "$imap" ]] && scenarios+=("$src/scenarios/imap")
  [[ -n "$pop3" ]] && scenarios+=("$src/scenarios/pop3")
  [[ -n "$smtp" ]] && scenarios+=("$src/scenarios/smtp")
  [[ -n "$imap" && -n "$pop3$smtp" ]] && scenarios+=("$src/scenarios/cross")
fi

# Flags shared by run and compare.
common=(--read-timeout "${MAILTAPE_TIMEOUT:-10}" --jobs "${MAILTAPE_JOBS:-1}")
read -r -a accounts <<<"${MAILTAPE_ACCOUNTS:-bob:bobpw}"
for a in "${accounts[@]}"; do common+=(--account "$a"); done
[[ -n "${MAILTAPE_CA_FILE:-}" ]] && common+=(--ca-file "$MAILTAPE_CA_FILE")
[[ "${MAILTAPE_INSECURE:-0}" == 1 ]] && common+=(--insecure)
[[ "${MAILTAPE_STRICT:-0}" == 1 ]] && common+=(--strict)

targets=()
for url in "$imap" "$pop3" "$smtp"; do
  [[ -n "$url" ]] && targets+=(--target "$name=$url")
done

mkdir -p "$reports" || { say "cannot create $reports"; exit 2; }
run=("$bin" run "${scenarios[@]}" "${targets[@]}" "${common[@]}" --no-snapshots
  --junit "$reports/junit.xml" --json "$reports/report.json")
[[ -n "${MAILTAPE_KNOWN_FAILURES:-}" ]] && run+=(--known-failures "$MAILTAPE_KNOWN_FAILURES")

say "running ${#scenarios[@]} scenario path(s) against $name"
# Snapshots belong to mailtape's own suite: a server under test is judged by the checks and
# scenarios (--no-snapshots), and nothing is written into the source tree.
"${run[@]}"
status=$?

if [[ "${MAILTAPE_COMPARE:-1}" == 1 ]] && "$bin" compare --help >/dev/null 2>&1; then
  say "comparing $name with the bundled reference server (informative)"
  "$bin" compare "${scenarios[@]}" "${targets[@]}" --target reference=reference "${common[@]}" \
    --report "$reports/compare.html" --report "$reports/compare.md" --quiet ||
    say "the comparison found differences (see $reports/compare.html)"
fi

say "reports in $reports/ - exit status $status"
exit "$status"
