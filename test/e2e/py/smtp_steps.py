#!/usr/bin/env python3
"""Drive Python's smtplib through a list of steps for Petrel's interop tests.

Reads a JSON object {"steps": [...]} on stdin and prints a JSON list with one
result per step: {"ok": true, "value": ...} or {"ok": false, "error": <exception
class>, "code": ..., "message": ..., ...}. A failing step does not stop the
run, so a test can assert on every reply of a session.

Steps ("op" and its arguments):
  connect   port, ssl (bool), helo_name      -> [code, msg]  (SMTP or SMTP_SSL)
  ehlo      name                             -> {"code", "msg", "features"}
  starttls                                   -> [code, msg]
  login     user, password, [mechanism]      -> [code, msg]
  docmd     cmd, [args]                      -> [code, msg]
  sendmail  from, to (list), msg_b64, [mail_options], [rcpt_options]
            -> {"refused": {...}, "data_reply": [code, msg]}
  quit                                       -> [code, msg]
Certificates are not verified (Petrel's test certificate is self-signed).
"""
import base64
import json
import smtplib
import ssl
import sys


def text(b):
    return b.decode("utf-8", "replace") if isinstance(b, (bytes, bytearray)) else b


def pair(r):
    return [r[0], text(r[1])]


class RecordingSMTP(smtplib.SMTP):
    """Remembers the reply to the end of DATA (sendmail() drops it)."""
    last_data_reply = None

    def data(self, msg):
        r = super().data(msg)
        self.last_data_reply = r
        return r


class RecordingSMTP_SSL(smtplib.SMTP_SSL):
    last_data_reply = None

    def data(self, msg):
        r = super().data(msg)
        self.last_data_reply = r
        return r


def error_of(e):
    out = {"ok": False, "error": type(e).__name__, "message": str(e)}
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        out["recipients"] = {k: pair(v) for k, v in e.recipients.items()}
    elif isinstance(e, smtplib.SMTPResponseException):
        out["code"] = e.smtp_code
        out["message"] = text(e.smtp_error)
    return out


def main():
    spec = json.load(sys.stdin)
    timeout = spec.get("timeout", 10)
    ctx = ssl._create_unverified_context()
    s = None
    results = []
    for step in spec["steps"]:
        op = step["op"]
        try:
            if op == "connect":
                if step.get("ssl"):
                    s = RecordingSMTP_SSL(local_hostname=step.get("helo_name"), timeout=timeout, context=ctx)
                else:
                    s = RecordingSMTP(local_hostname=step.get("helo_name"), timeout=timeout)
                s._host = "127.0.0.1"  # connect() alone leaves it empty; TLS needs it
                value = pair(s.connect("127.0.0.1", step["port"]))
            elif op == "ehlo":
                r = s.ehlo(step.get("name"))
                value = {"code": r[0], "msg": text(r[1]), "features": s.esmtp_features}
            elif op == "starttls":
                value = pair(s.starttls(context=ctx))
            elif op == "login":
                if step.get("mechanism"):
                    mech = step["mechanism"]
                    s.user, s.password = step["user"], step["password"]
                    value = pair(s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_"))))
                else:
                    value = pair(s.login(step["user"], step["password"]))
            elif op == "docmd":
                value = pair(s.docmd(step["cmd"], step.get("args", "")))
            elif op == "sendmail":
                s.last_data_reply = None
                refused = s.sendmail(
                    step["from"], step["to"], base64.b64decode(step["msg_b64"]),
                    step.get("mail_options", []), step.get("rcpt_options", []),
                )
                value = {
                    "refused": {k: pair(v) for k, v in refused.items()},
                    "data_reply": pair(s.last_data_reply) if s.last_data_reply else None,
                }
            elif op == "quit":
                value = pair(s.quit())
            else:
                raise ValueError("unknown op " + op)
            results.append({"ok": True, "value": value})
        except Exception as e:  # every failure is a result the test asserts on
            results.append(error_of(e))
    if s is not None:
        try:
            s.close()
        except Exception:
            pass
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
