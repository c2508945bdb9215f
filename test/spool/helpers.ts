import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { Envelope } from "../../src/smtp/envelope.ts";

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-spool-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function sampleEnvelope(overrides: Partial<Envelope> = {}): Envelope {
  return {
    mailFrom: "alice@example.org",
    recipients: [
      { address: "bob@example.com", notify: ["FAILURE", "DELAY"], orcpt: "rfc822;bob@example.com" },
      { address: "cárol@exämple.com" },
    ],
    declaredSize: 1234,
    body: "8BITMIME",
    smtputf8: true,
    requireTls: false,
    client: {
      address: "192.0.2.7",
      port: 51234,
      hostname: "mail.example.org",
      helo: "mail.example.org",
      protocol: "ESMTPSA",
      tls: { version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" },
      authUser: "alice",
      role: "submission",
    },
    receivedAt: 1_700_000_000_000,
    ...overrides,
  };
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
