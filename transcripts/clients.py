"""Python's own mail clients (imaplib, smtplib, poplib), run against given ports on 127.0.0.1.

No proxy here: point the client at `mailtape record`'s --listen ports and the recorder writes
the file (transcripts/README.md has the exact commands that made the recordings here).
Every session logs in as alice/alicepw and cleans up after itself.

usage: clients.py imap PORT [MAILBOX]
           CREATE MAILBOX (default replay-py), APPEND three messages, NOOP, UID SEARCH,
           FETCH, UID STORE, UID FETCH of a header field, STORE \\Deleted, EXPUNGE, STATUS,
           CLOSE, DELETE MAILBOX, LOGOUT.
       clients.py smtp-pop3 SMTP_PORT POP3_PORT
           smtplib delivers one message from bob to alice, then poplib logs in as alice,
           STAT, LIST, UIDL, RETR and DELE of the newest message, QUIT.
"""

import imaplib
import poplib
import smtplib
import sys

HOST = "127.0.0.1"


def imap_client(port, mailbox):
    c = imaplib.IMAP4(HOST, port)
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
    s = smtplib.SMTP(HOST, smtp_port, local_hostname="client.example.test")
    s.sendmail(
        "bob@example.test",
        ["alice@example.test"],
        "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: replay pop3\r\n\r\nhello\r\n",
    )
    s.quit()
    p = poplib.POP3(HOST, pop3_port)
    p.user("alice")
    p.pass_("alicepw")
    count, _ = p.stat()
    p.list()
    p.uidl()
    p.retr(count)
    p.dele(count)
    p.quit()


def main(argv):
    if len(argv) in (3, 4) and argv[1] == "imap":
        imap_client(int(argv[2]), argv[3] if len(argv) == 4 else "replay-py")
    elif len(argv) == 4 and argv[1] == "smtp-pop3":
        smtp_pop3_client(int(argv[2]), int(argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
