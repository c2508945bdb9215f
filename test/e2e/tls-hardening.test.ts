/**
 * TLS hardening of Petrel's listeners, proven with Debian's `openssl s_client`:
 * client-initiated renegotiation is refused on every role, submission ports
 * offer only AEAD suites with forward secrecy, mx stays broad but never offers
 * NULL encryption, and the cipher lists are configurable.
 */
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import * as tls from "node:tls";
import { once } from "node:events";
import { generateSelfSigned } from "../../src/server/tls-certificates.ts";
import { parseConfig } from "../../src/config/load.ts";
import { ConfigError } from "../../src/config/config-error.ts";
import { startPetrel, type TestPetrel } from "./petrel.ts";
import { handshakeCipher, requireOpenssl, sClient, type SClientOptions } from "../support/openssl-client.ts";

let petrel: TestPetrel;

before(async () => {
  requireOpenssl();
  petrel = await startPetrel();
});

after(async () => {
  await petrel.stop();
});

type Role = "mx" | "submission" | "submissions";
const target = (role: Role): SClientOptions => ({ port: petrel[role], ...(role === "submissions" ? {} : { starttls: "smtp" as const }) });

describe("client-initiated renegotiation", () => {
  for (const role of ["mx", "submission", "submissions"] as const) {
    test(`is refused on ${role} (s_client "R", TLS 1.2)`, async () => {
      const c = sClient({ ...target(role), version: "-tls1_2" });
      try {
        await c.waitFor(/Verify return code/);
        if (role === "submissions") await c.waitFor(/^220 /m);
        c.write("R\n");
        await c.waitFor(/RENEGOTIATING/);
        // Allowed, the renegotiation completes and the server answers the next command.
        c.write("EHLO after.test\n");
        // waitFor rejects when s_client ends without the reply.
        const answer = await c.waitFor(/^250[ -]mx\.example\.test Hello after\.test/m).then(() => "answered", () => "closed");
        assert.equal(answer, "closed", `the server renegotiated and answered:\n${c.output()}`);
        assert.match(c.output(), /no renegotiation/);
      } finally {
        c.kill();
      }
    });
  }
});

describe("cipher policy per role", () => {
  for (const role of ["submission", "submissions"] as const) {
    test(`${role}: a CBC suite without AEAD is refused, AEAD with forward secrecy is accepted`, async () => {
      const cbc = await handshakeCipher({ ...target(role), version: "-tls1_2", cipher: "ECDHE-ECDSA-AES128-SHA" });
      assert.equal(cbc.cipher, null, cbc.output);
      assert.match(cbc.output, /handshake failure|no shared cipher|alert/i);
      for (const aead of ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]) {
        const ok = await handshakeCipher({ ...target(role), version: "-tls1_2", cipher: aead });
        assert.equal(ok.cipher, aead, ok.output);
      }
      const v13 = await handshakeCipher({ ...target(role), version: "-tls1_3" });
      assert.equal(v13.cipher, "TLS_AES_128_GCM_SHA256", v13.output); // the server's order (honorCipherOrder)
    });
  }

  test("mx: old CBC suites still work (opportunistic TLS beats plaintext)", async () => {
    const r = await handshakeCipher({ ...target("mx"), version: "-tls1_2", cipher: "ECDHE-ECDSA-AES128-SHA" });
    assert.equal(r.cipher, "ECDHE-ECDSA-AES128-SHA", r.output);
  });

  test("mx: NULL encryption is never offered, though the client can negotiate it", async () => {
    const nullSuite = "ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0";
    // A control server that allows NULL shows that s_client really offers the suite.
    const pems = await generateSelfSigned("control.test");
    const control = tls.createServer({ cert: pems.cert, key: pems.key, ciphers: nullSuite, maxVersion: "TLSv1.2" }, (s) => s.end());
    control.on("tlsClientError", () => {});
    control.listen(0, "127.0.0.1");
    await once(control, "listening");
    try {
      const port = (control.address() as { port: number }).port;
      const allowed = await handshakeCipher({ port, version: "-tls1_2", cipher: nullSuite });
      assert.equal(allowed.cipher, "ECDHE-ECDSA-NULL-SHA", allowed.output);
    } finally {
      control.close();
    }
    const refused = await handshakeCipher({ ...target("mx"), version: "-tls1_2", cipher: nullSuite });
    assert.equal(refused.cipher, null, refused.output);
  });
});

describe("configured cipher lists", () => {
  test("tls.ciphers.submission narrows what submission offers; NULL written there is still removed", async () => {
    const p = await startPetrel({
      tls: { ciphers: { submission: "TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-NULL-SHA" } },
    });
    try {
      const aes128 = await handshakeCipher({ port: p.submission, starttls: "smtp", version: "-tls1_2", cipher: "ECDHE-ECDSA-AES128-GCM-SHA256" });
      assert.equal(aes128.cipher, null, aes128.output);
      const aes256 = await handshakeCipher({ port: p.submission, starttls: "smtp", version: "-tls1_2", cipher: "ECDHE-ECDSA-AES256-GCM-SHA384" });
      assert.equal(aes256.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384", aes256.output);
      const nul = await handshakeCipher({ port: p.submission, starttls: "smtp", version: "-tls1_2", cipher: "ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0" });
      assert.equal(nul.cipher, null, nul.output);
      const v13 = await handshakeCipher({ port: p.submission, starttls: "smtp", version: "-tls1_3" });
      assert.equal(v13.cipher, "TLS_AES_128_GCM_SHA256", v13.output);
      // The other roles keep their defaults.
      const mx = await handshakeCipher({ port: p.mx, starttls: "smtp", version: "-tls1_2", cipher: "ECDHE-ECDSA-AES128-GCM-SHA256" });
      assert.equal(mx.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256", mx.output);
    } finally {
      await p.stop();
    }
  });

  test("a cipher list that leaves nothing is a configuration error naming the key", () => {
    assert.throws(() => parseConfig({ tls: { ciphers: { mx: "NULL-SHA:RC4-SHA" } } }, "petrel.yaml"), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /tls\.ciphers\.mx/);
      assert.match(err.message, /expected an OpenSSL cipher string/);
      return true;
    });
  });
});
