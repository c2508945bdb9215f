/**
 * The configuration of message authentication (`authentication`): its defaults, per-domain
 * overrides with domains normalized, and errors naming the key.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { configError } from "./expect-config-error.ts";
import { parseConfig, parseConfigText } from "../../src/config/load.ts";

test("defaults: checked on mx, loopback ignored, nothing excepted, SPF fail not refused at MAIL, DMARC enforced into Junk, own domains protected, forwards sealed", () => {
  assert.deepEqual(parseConfig({}, "test", { checkFiles: false }).authentication, {
    verify: true,
    ignoreClients: ["127.0.0.0/8", "::1"],
    exceptions: [],
    spf: { rejectFail: false },
    dkim: { maxSignatures: 5 },
    dmarc: { enforce: true, quarantine: "folder", junkFolder: "Junk", localDomains: "reject" },
    arc: { trustedSealers: [], seal: true },
    domains: {},
  });
});

test("per-domain DMARC settings, sealer domains normalized", () => {
  const c = parseConfigText(`
authentication:
  exceptions: [192.0.2.0/24, "2001:db8::1"]
  arc: { trustedSealers: [Lists.Example.ORG] }
  domains:
    Example.ORG: { dmarc: { enforce: false } }
    shop.example: { dmarc: { quarantine: header } }
`, "test");
  assert.deepEqual(c.authentication.domains, { "example.org": { dmarc: { enforce: false } }, "shop.example": { dmarc: { quarantine: "header" } } });
  assert.deepEqual(c.authentication.arc.trustedSealers, ["lists.example.org"]);
  assert.deepEqual(c.authentication.exceptions, ["192.0.2.0/24", "2001:db8::1"]);
});

test("authentication errors name the key", () => {
  const err = configError(() => parseConfigText(`
authentication:
  exceptions: [10.0.0.0/33]
  dmarc: { quarantine: hold, junkFolder: "INBOX", localDomain: reject }
  dkim: { maxSignatures: 0 }
  domains:
    "not a domain": { dmarc: { enforce: false } }
`, "petrel.yaml"));
  const paths = err.issues.map((i) => i.path).sort();
  assert.deepEqual(paths, [
    "authentication.dkim.maxSignatures",
    "authentication.dmarc.junkFolder",
    "authentication.dmarc.localDomain",
    "authentication.dmarc.quarantine",
    "authentication.domains.not a domain",
    "authentication.exceptions[0]",
  ]);
  assert.match(err.message, /authentication\.dmarc\.localDomain: unknown key 'localDomain' \(did you mean 'localDomains'\?\)/);
  assert.match(err.message, /authentication\.dmarc\.junkFolder: got "INBOX"; expected a folder name such as "Junk"/);
});
