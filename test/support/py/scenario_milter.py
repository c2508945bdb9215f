"""A mail filter on Sendmail's libmilter (Debian's python3-milter) for
Petrel's milter tests: the milter actions rspamd and OpenDKIM never take
(recipient changes, header changes and deletes, quarantine, multi-line
replies, progress, skip, discard, refusals at each stage) are chosen by the
message itself, so one filter serves every test:

  client address 127.0.0.66   -> refuse at connect (554 5.7.1 with text)
  HELO "refuse.example"       -> refuse the HELO (550 5.7.1 with text)
  MAIL FROM <tempfail-mail@…> -> tempfail the MAIL (plain SMFIR_TEMPFAIL)
  RCPT TO <reject@…>          -> refuse this recipient (550 5.1.1 with text)
  RCPT TO <discard@…>         -> discard the message
  RCPT TO <accept@…>          -> accept: no more steps for this message
  RCPT TO <multiline@…>       -> refuse at end of message, two lines (550 5.7.0)
  RCPT TO <quarantine@…>      -> quarantine at end of message
  RCPT TO <edits@D>           -> header changes at end of message, recipient added@D added, edits@D deleted
  RCPT TO <progress@…>        -> SMFIR_PROGRESS, then answer late (PROGRESS_WAIT s apart, 3 times)
  RCPT TO <slow@…>            -> answer end of message only after SLOW_WAIT s
  RCPT TO <skip@…>            -> SMFIR_SKIP after the first body chunk

At end of message the filter adds X-Seen-* fields telling what it saw: the
macros of each stage, the header fields as they arrived (repr), the number
of body chunks and octets, and whether it was told of an abort.

Usage: scenario_milter.py SOCKET [leadspc]
"""
import os
import sys
import time

import Milter

PROGRESS_WAIT = float(os.environ.get("PROGRESS_WAIT", "0.6"))
SLOW_WAIT = float(os.environ.get("SLOW_WAIT", "5"))

MACROS = {
    "connect": ["j", "_", "v", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{if_addr}", "{client_addr}", "{client_port}", "{client_name}"],
    "helo": ["{tls_version}", "{cipher}"],
    "mail": ["i", "{auth_type}", "{auth_authen}", "{mail_addr}"],
    "rcpt": ["i", "{rcpt_addr}"],
    "data": ["i"],
    "eom": ["i"],
}

class Scenario(Milter.Base):
    def __init__(self):
        self.seen = {}
        self.aborts = 0
        self.new_message()

    def new_message(self):
        self.rcpts = []
        self.headers = []
        self.chunks = 0
        self.octets = 0
        self.mail_args = []
        self.rcpt_args = []

    def record(self, stage):
        self.seen[stage] = ";".join(
            "%s=%s" % (m, self.getsymval(m)) for m in MACROS[stage] if self.getsymval(m) is not None
        )

    def connect(self, hostname, family, hostaddr):
        self.record("connect")
        self.client = (hostname, hostaddr)
        if hostaddr and hostaddr[0] == "127.0.0.66":
            self.setreply("554", "5.7.1", "connection refused by the scenario filter")
            return Milter.REJECT
        return Milter.CONTINUE

    def hello(self, name):
        self.record("helo")
        self.helo = name
        if name == "refuse.example":
            self.setreply("550", "5.7.1", "HELO refused by the scenario filter")
            return Milter.REJECT
        return Milter.CONTINUE

    def envfrom(self, f, *args):
        self.new_message()
        self.record("mail")
        self.mail_from = f
        self.mail_args = list(args)
        if f.startswith("<tempfail-mail@"):
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        self.record("rcpt")
        local = to.strip("<>").split("@")[0]
        if local == "reject":
            self.setreply("550", "5.1.1", "<%s>: refused by the scenario filter" % to.strip("<>"))
            return Milter.REJECT
        if local == "discard":
            return Milter.DISCARD
        if local == "accept":
            return Milter.ACCEPT
        self.rcpts.append(local)
        if local == "edits":
            self.edits_domain = to.strip("<>").split("@")[1]
        self.rcpt_args += list(args)
        return Milter.CONTINUE

    def data(self):
        self.record("data")
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name, value):
        self.headers.append((name, value))
        return Milter.CONTINUE

    def body(self, chunk):
        self.chunks += 1
        self.octets += len(chunk)
        if "skip" in self.rcpts:
            return Milter.SKIP
        return Milter.CONTINUE

    def eom(self):
        self.record("eom")
        if "multiline" in self.rcpts:
            self.setreply("550", "5.7.0", "first line of the refusal", "second line of the refusal")
            return Milter.REJECT
        if "slow" in self.rcpts:
            time.sleep(SLOW_WAIT)
        if "progress" in self.rcpts:
            for _ in range(3):
                self.progress()
                time.sleep(PROGRESS_WAIT)
        for stage in ("connect", "helo", "mail", "rcpt", "data", "eom"):
            self.addheader("X-Seen-%s" % stage.capitalize(), self.seen.get(stage, ""))
        self.addheader("X-Seen-Args", " ".join(self.mail_args + self.rcpt_args))
        self.addheader("X-Seen-Headers", repr(self.headers))
        self.addheader("X-Seen-Body", "%d chunks, %d octets" % (self.chunks, self.octets))
        self.addheader("X-Seen-Aborts", str(self.aborts))
        if "quarantine" in self.rcpts:
            self.quarantine("held by the scenario filter")
        if "edits" in self.rcpts:
            self.addheader("X-Top", "inserted at the top", 0)
            self.addheader("X-Folded", "first line\n\tsecond line")
            self.chgheader("Subject", 1, "changed subject")
            self.chgheader("X-Remove", 1, "")
            self.chgheader("X-Absent", 1, "added by change")
            self.addrcpt("<added@%s>" % self.edits_domain)
            self.delrcpt("<edits@%s>" % self.edits_domain)
        return Milter.CONTINUE

    def abort(self):
        self.aborts += 1
        return Milter.CONTINUE

    def close(self):
        return Milter.CONTINUE


if __name__ == "__main__":
    if "leadspc" in sys.argv[2:]:
        Scenario = Milter.header_leading_space(Scenario)
    Milter.factory = Scenario
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    Milter.runmilter("scenario", sys.argv[1], 30)
