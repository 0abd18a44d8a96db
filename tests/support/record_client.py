"""Records a real Python client (imaplib, poplib, smtplib) as a mailtape recording.

A small line proxy stands between the client and the server and writes every line that
crosses it in the recording format (docs/replay.md): `C1:`/`S1:` lines in time order, one
session per connection, credentials replaced by {user}/{password}/{auth_plain}. It is the
test helper that made the files under transcripts/ and that tests/replay.rs uses to record
against Dovecot; `mailtape record` does the same job for any client.

usage: record_client.py CLIENT HOST:PORT[,HOST:PORT...] OUT.ron [MAILBOX]
CLIENT: imap | pop3 | smtp-pop3 (SMTP delivery to alice, then POP3 retrieval and deletion).
"""

import imaplib
import poplib
import re
import smtplib
import socket
import sys
import threading

LINES = []  # (session, "C" | "S", text)
LOCK = threading.Lock()
USERS = {}  # session -> login
PROTOCOLS = {}  # session -> protocol
SASL_NEXT = {}  # session -> True when the next client line is a SASL response


def redact(session, protocol, line):
    if SASL_NEXT.pop(session, False):
        return "{auth_plain}"
    if protocol == "imap":
        m = re.match(r'^(\S+) LOGIN ("?)([^" ]+)\2 .*$', line, re.I)
        if m:
            USERS[session] = m.group(3)
            return f"{m.group(1)} LOGIN {{user}} {{password}}"
    elif protocol == "pop3":
        m = re.match(r"^USER (.*)$", line, re.I)
        if m:
            USERS[session] = m.group(1)
            return "USER {user}"
        if re.match(r"^PASS ", line, re.I):
            return "PASS {password}"
    return line


class Pipe(threading.Thread):
    def __init__(self, session, protocol, src, dst, direction):
        super().__init__(daemon=True)
        self.session, self.protocol = session, protocol
        self.src, self.dst, self.direction = src, dst, direction

    def run(self):
        buf = b""
        while True:
            try:
                data = self.src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with LOCK:
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.rstrip(b"\r").decode("utf-8", "replace")
                    if self.direction == "C":
                        text = redact(self.session, self.protocol, text)
                    elif self.protocol == "smtp" and text.startswith("334"):
                        SASL_NEXT[self.session] = True
                    LINES.append((self.session, self.direction, text))
                # Forwarded under the lock: the next line of the other side cannot be
                # recorded before this one reached its reader.
                try:
                    self.dst.sendall(data)
                except OSError:
                    break
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Proxy:
    """One listening port per upstream endpoint, connections numbered as accepted."""

    counter = 0

    def __init__(self, protocol, upstream):
        host, port = upstream.rsplit(":", 1)
        self.protocol, self.upstream = protocol, (host, int(port))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.sock.accept()
            with LOCK:
                Proxy.counter += 1
                session = str(Proxy.counter)
            PROTOCOLS[session] = self.protocol
            server = socket.create_connection(self.upstream)
            Pipe(session, self.protocol, server, client, "S").start()
            Pipe(session, self.protocol, client, server, "C").start()


def imap_client(port, mailbox):
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("alice", "alicepw")
    c.create(mailbox)
    c.select(mailbox)
    for n in range(1, 4):
        msg = f"From: alice@example.test\r\nSubject: replay {n}\r\n\r\nbody {n}\r\n"
        c.append(mailbox, "(\\Seen)" if n == 1 else None, None, msg.encode())
    c.noop()
    c.uid("SEARCH", None, "ALL")
    c.fetch("1:*", "(UID FLAGS)")
    c.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    c.uid("FETCH", "3", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.status(mailbox, "(MESSAGES UIDNEXT UNSEEN)")
    c.close()
    c.delete(mailbox)
    c.logout()


def smtp_pop3_client(smtp_port, pop3_port):
    s = smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="client.example.test")
    s.sendmail(
        "bob@example.test",
        ["alice@example.test"],
        "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: replay pop3\r\n\r\nhello\r\n",
    )
    s.quit()
    p = poplib.POP3("127.0.0.1", pop3_port)
    p.user("alice")
    p.pass_("alicepw")
    count, _ = p.stat()
    p.list()
    p.uidl()
    p.retr(count)
    p.dele(count)
    p.quit()


def write(path, protocol):
    sessions = []
    for s in sorted(PROTOCOLS, key=int):
        parts = [f'user: "{USERS.get(s, "alice")}"', 'state: "not-authenticated"']
        if PROTOCOLS[s] != protocol:
            parts.append(f'protocol: "{PROTOCOLS[s]}"')
        sessions.append(f'        "{s}": ({", ".join(parts)}),')
    body = "\n".join(f"{d}{s}: {t}".rstrip() if t else f"{d}{s}:" for s, d, t in LINES)
    hashes = "#"
    while f'"{hashes}' in body:
        hashes += "#"
    with open(path, "w") as f:
        f.write(
            f"// Recorded by tests/support/record_client.py from Python's {protocol} client.\n"
            "Scenario(\n"
            f'    id: "recorded-python-{protocol}",\n'
            f'    title: "Python {protocol} client, recorded",\n'
            '    spec: ["recorded"],\n'
            f'    protocol: "{protocol}",\n'
            "    mailboxes: [],\n"
            "    sessions: {\n" + "\n".join(sessions) + "\n    },\n"
            f'    script: r{hashes}"\n{body}\n"{hashes},\n'
            ")\n"
        )


def main():
    client, upstreams, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    if client == "imap":
        proxy = Proxy("imap", upstreams[0])
        imap_client(proxy.port, sys.argv[4] if len(sys.argv) > 4 else "replay-test")
        protocol = "imap"
    else:
        smtp, pop3 = Proxy("smtp", upstreams[0]), Proxy("pop3", upstreams[1])
        smtp_pop3_client(smtp.port, pop3.port)
        protocol = "smtp"
    # Every line is recorded before it is forwarded, so what the client saw is written.
    with LOCK:
        write(out, protocol)


main()
