#!/usr/bin/env python3
"""Writes seed inputs for the imap_response fuzz target.

Dovecot transcripts are recorded from a real Dovecot `imap` process in preauth mode
(the command that runs it is the first argument, e.g. a script that execs
`/usr/lib/dovecot/imap -c CONF` with USER and HOME set). Gmail transcripts are written by
hand from Google's documented X-GM-EXT-1 formats, as no Gmail account is reachable here.

Each seed is one control byte (session limits and read-split pattern, see the target)
followed by what the server sent. Tags A1..A11 match the commands the target enqueues.
"""
import os
import subprocess
import sys

cmd, out_dir = sys.argv[1], sys.argv[2]
os.makedirs(out_dir, exist_ok=True)


def dovecot(client: bytes) -> bytes:
    r = subprocess.run(cmd, input=client, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, shell=True)
    return r.stdout


def lit(b: bytes, plus=True) -> bytes:
    return b"{%d%s}\r\n" % (len(b), b"+" if plus else b"") + b


MSG1 = (b"From: a@example.org\r\nTo: bob@example.org\r\nSubject: Hello {braces} \"q\"\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n"
        b"Body line 1\r\n* 1 FETCH (fake)\r\nA9 OK not really\r\n{5}\r\n")
MSG2 = "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n\u00e9t\u00e9 8bit body\r\n".encode()
MSG3 = b"Subject: bare LF\n\nline\nno final newline"

setup = (b"A1 CREATE Sent\r\nA2 CREATE \"Archive/2024\"\r\nA3 CREATE &AOk-t&AOk-\r\n"
         b"A4 CREATE \"with space\"\r\n"
         b"A5 APPEND INBOX (\\Seen $Label1) \"01-Jan-2024 10:00:00 +0000\" " + lit(MSG1) + b"\r\n"
         b"A6 APPEND INBOX () " + lit(MSG2) + b"\r\n"
         b"A7 APPEND INBOX (\\Flagged \\Answered \\Draft) " + lit(MSG3) + b"\r\n"
         b"A8 APPEND Sent " + lit(b"hello") + b"\r\n"
         b"A9 APPEND &AOk-t&AOk- " + lit(MSG2) + b"\r\n"
         b"A10 LOGOUT\r\n")
seeds = {"dovecot_setup": dovecot(setup)}

# The target's own command sequence, as Dovecot answers it.
main = (b"A1 CAPABILITY\r\nA2 LOGIN user " + lit("p\u00e4ssword".encode(), False) + b"\r\n"
        b"A3 LIST \"\" \"*\"\r\nA4 SELECT INBOX\r\nA5 UID FETCH 1:* (FLAGS)\r\n"
        b"A6 UID FETCH 1:5 (FLAGS INTERNALDATE BODY.PEEK[])\r\n"
        b"A7 APPEND INBOX (\\Seen) " + lit(b"Subject: x\r\n\r\nhi\r\n", False) + b"\r\n"
        b"A8 AUTHENTICATE PLAIN\r\nAHVzZXIAcGFzcw==\r\n"
        b"A9 UID STORE 3 +FLAGS.SILENT (\\Seen)\r\nA10 EXPUNGE\r\nA11 LOGOUT\r\n")
seeds["dovecot_main"] = dovecot(main)

ext = (b"A1 ENABLE QRESYNC\r\nA2 LIST (SPECIAL-USE) \"\" \"*\" RETURN (CHILDREN STATUS (MESSAGES UIDNEXT UIDVALIDITY))\r\n"
       b"A3 SELECT INBOX (CONDSTORE)\r\n"
       b"A4 UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE MODSEQ SAVEDATE EMAILID THREADID X-GUID)\r\n"
       b"A5 UID SEARCH RETURN (ALL COUNT) 1:*\r\nA6 UID SEARCH ALL\r\nA7 UID COPY 1:2 Sent\r\n"
       b"A8 UID MOVE 3 \"Archive/2024\"\r\nA9 STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)\r\n"
       b"A10 UID FETCH 1:* (RFC822 BODY[HEADER.FIELDS (SUBJECT)] BODY.PEEK[]<0.10> BINARY.PEEK[1])\r\n"
       b"A11 ID (\"name\" \"fuzz\")\r\nA12 NAMESPACE\r\nA13 EXAMINE \"&AOk-t&AOk-\"\r\n"
       b"A14 FETCH 1 (ENVELOPE BODYSTRUCTURE)\r\nA15 UID EXPUNGE 1\r\nA16 CLOSE\r\n"
       b"A17 SELECT INBOX (QRESYNC (1 1))\r\nA18 NOOP\r\nA19 BOGUS\r\nA20 LOGOUT\r\n")
seeds["dovecot_extensions"] = dovecot(ext)

seeds["gmail_session"] = (
    b"* OK Gimap ready for requests from 127.0.0.1 m12mb123456ab\r\n"
    b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584\r\n"
    b"A1 OK Thats all she wrote! m12mb123456ab\r\n"
    b"+ go ahead\r\n"
    b"A2 OK user@gmail.com authenticated (Success)\r\n"
    b"* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
    b"* LIST (\\HasChildren \\Noselect) \"/\" \"[Gmail]\"\r\n"
    b"* LIST (\\All \\HasNoChildren) \"/\" \"[Gmail]/All Mail\"\r\n"
    b"* LIST (\\HasNoChildren \\Sent) \"/\" \"[Gmail]/Sent Mail\"\r\n"
    b"* LIST (\\HasNoChildren \\Important) \"/\" \"[Gmail]/Important\"\r\n"
    b"* LIST (\\HasNoChildren) \"/\" {12}\r\nMuy \"Import\r\n"
    b"* LIST (\\HasNoChildren) \"/\" \"&AOk-t&AOk-\"\r\n"
    b"A3 OK Success\r\n"
    b"* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing)\r\n"
    b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing \\*)] Flags permitted.\r\n"
    b"* OK [UIDVALIDITY 1] UIDs valid.\r\n* 3 EXISTS\r\n* 0 RECENT\r\n"
    b"* OK [UIDNEXT 10] Predicted next UID.\r\n* OK [HIGHESTMODSEQ 1234567]\r\n"
    b"A4 OK [READ-WRITE] INBOX selected. (Success)\r\n"
    b"* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334865 X-GM-LABELS (\\Inbox \\Sent Important \"Muy Importante\") UID 4 FLAGS (\\Seen))\r\n"
    b"* 2 FETCH (X-GM-LABELS () UID 7 FLAGS ())\r\n"
    b"* 3 FETCH (UID 9 X-GM-LABELS (\"\\\\Important\" {3}\r\nabc) FLAGS (\\Seen \\Flagged $Forwarded))\r\n"
    b"A5 OK Success\r\n"
    b"* 1 FETCH (X-GM-MSGID 1278455344230334865 UID 4 FLAGS (\\Seen) INTERNALDATE \"05-Mar-2024 09:15:00 +0100\" BODY[] {19}\r\nSubject: g\r\n\r\nhi\r\n)\r\n"
    b"* 2 FETCH (UID 7 INTERNALDATE \" 5-Mar-2024 09:15:00 -0800\" BODY[] {0}\r\n FLAGS ())\r\n"
    b"A6 OK Success\r\n"
    b"+ go ahead\r\n"
    b"A7 OK [APPENDUID 1 10] (Success)\r\n"
    b"+ \r\n"
    b"A8 NO [ALERT] Application-specific password required: https://support.google.com/mail/?p=InvalidSecondFactor\r\n"
    b"* 3 FETCH (UID 9 MODSEQ (1234570) FLAGS (\\Seen))\r\n"
    b"A9 OK Success\r\n"
    b"* 2 EXPUNGE\r\n* 2 EXISTS\r\n"
    b"A10 OK Success\r\n"
    b"* BYE LOGOUT Requested\r\n"
    b"A11 OK 73 good day (Success)\r\n")

seeds["odd_servers"] = (
    b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Microsoft Exchange Server IMAP4 service is ready.\r\n"
    b"* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\n"
    b"A1 OK\r\n"
    b"+ \r\n"
    b"A2 OK LOGIN completed.\r\n"
    b"* LIST (\\Marked \\HasNoChildren) \"/\" Inbox\r\n* LIST (\\HasNoChildren \\Trash) \"/\" \"Deleted Items\"\r\n"
    b"* LIST (\\Noselect) NIL \"\"\r\n* XLIST (\\Inbox) \"/\" INBOX\r\n"
    b"A3 OK LIST completed.\r\n"
    b"* 0 EXISTS\r\n* OK [UIDVALIDITY 14] UIDVALIDITY value\r\n* OK [UNSEEN 0]\r\n"
    b"A4 OK [READ-ONLY] SELECT completed.\r\n"
    b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) SAVEDATE NIL)\r\n"
    b"* 2 FETCH (FLAGS (\\Deleted) UID 2)\r\n"
    b"* 3 FETCH (UID 3 FLAGS (\\Seen)) \r\n"
    b"A5 OK FETCH completed.\n"
    b"* 1 FETCH (UID 1 RFC822 NIL BODY[] NIL)\r\n"
    b"* 2 FETCH (UID 2 BODY[]<0> {4}\r\nabcd INTERNALDATE \"31-Dec-1969 23:59:59 +0000\")\r\n"
    b"A6 OK\r\n")

controls = {
    "dovecot_setup": [0x00],
    "dovecot_main": [0x00, 0x43, 0x90],
    "dovecot_extensions": [0x03, 0xc0],
    "gmail_session": [0x00, 0x83],
    "odd_servers": [0x10, 0x5f],
}
for name, data in seeds.items():
    if not data:
        sys.exit(f"no output for {name}")
    for c in controls[name]:
        with open(os.path.join(out_dir, f"{name}_{c:02x}"), "wb") as f:
            f.write(bytes([c]) + data)
    # A few truncated copies: a response cut inside a literal, a line, a CRLF.
    for cut in (len(data) // 3, len(data) // 2 + 1, len(data) - 1):
        with open(os.path.join(out_dir, f"{name}_cut{cut}"), "wb") as f:
            f.write(b"\x00" + data[:cut])
