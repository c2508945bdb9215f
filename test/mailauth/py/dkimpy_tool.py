#!/usr/bin/python3
"""dkimpy (Debian python3-dkim) as an independent DKIM/ARC implementation for Petrel's tests.

    dkimpy_tool.py verify KEYS.json          < message   -> JSON list, one entry per DKIM-Signature
    dkimpy_tool.py sign KEYS.json SEL DOM ALGO KEYFILE  < message   -> the DKIM-Signature field
    dkimpy_tool.py arc-verify KEYS.json      < message   -> JSON {cv, comment}
    dkimpy_tool.py arc-sign SEL DOM ALGO KEYFILE SRV_ID < message   -> the ARC fields

KEYS.json maps "selector._domainkey.domain" to the TXT record value: the dnsfunc, so no DNS is
used. ALGO is rsa-sha256 or ed25519-sha256; KEYFILE holds a PEM key (rsa) or the base64 Ed25519
seed (ed25519), the formats dkimpy reads.
"""
import json
import sys

try:
    import dkim
except ImportError:
    sys.stderr.write("python3-dkim is not installed (apt-get install python3-dkim)\n")
    sys.exit(3)


def dnsfunc_from(path):
    with open(path) as f:
        keys = json.load(f)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        value = keys.get(name.rstrip("."))
        return value.encode() if value is not None else None

    return dnsfunc


def main():
    mode = sys.argv[1]
    message = sys.stdin.buffer.read()
    if mode == "verify":
        dnsfunc = dnsfunc_from(sys.argv[2])
        d = dkim.DKIM(message)
        count = sum(1 for (name, _) in d.headers if name.lower() == b"dkim-signature")
        results = []
        for i in range(count):
            try:
                ok = dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc)
                results.append({"pass": bool(ok)})
            except Exception as e:  # dkimpy raises on malformed signatures and keys
                results.append({"pass": False, "error": str(e)})
        print(json.dumps(results))
    elif mode == "sign":
        _, _, selector, domain, algo, keyfile = sys.argv[1:7]
        with open(keyfile, "rb") as f:
            key = f.read()
        sig = dkim.sign(message, selector.encode(), domain.encode(), key,
                        canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algo.encode(),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        sys.stdout.buffer.write(sig)
    elif mode == "arc-verify":
        dnsfunc = dnsfunc_from(sys.argv[2])
        cv, results, comment = dkim.arc_verify(message, dnsfunc=dnsfunc)
        print(json.dumps({"cv": cv.decode(), "comment": comment}))
    elif mode == "arc-sign":
        selector, domain, algo, keyfile, srv_id = sys.argv[2:7]
        with open(keyfile, "rb") as f:
            key = f.read()
        fields = dkim.arc_sign(message, selector.encode(), domain.encode(), key, srv_id.encode(),
                               signature_algorithm=algo.encode())
        sys.stdout.buffer.write(b"".join(fields))
    else:
        sys.stderr.write("unknown mode %s\n" % mode)
        sys.exit(2)


main()
