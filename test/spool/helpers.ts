import type { Spool } from "../../src/spool/spool.ts";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { Envelope } from "../../src/mail/envelope.ts";

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

/** Open a spool made by `make` in a fresh directory, run `fn`, then close and clean up. */
export async function withSpoolIn<S extends Spool>(
  make: (dir: string, onWarning: (m: string) => void) => S,
  fn: (spool: S, dir: string, warnings: string[]) => Promise<void>,
): Promise<void> {
  const { dir, cleanup } = await tempDir();
  const warnings: string[] = [];
  const spool = make(dir, (m) => warnings.push(m));
  try {
    await spool.open();
    await fn(spool, dir, warnings);
  } finally {
    await spool.close();
    await cleanup();
  }
}

/** Write `chunks` as one message and commit it; returns its id. */
export async function store(spool: Spool, chunks: Buffer[], envelope = sampleEnvelope()): Promise<string> {
  const w = await spool.create();
  for (const c of chunks) await w.write(c);
  await w.commit(envelope);
  return w.id;
}

/** 5 MiB holding every byte value, in pseudo-random order. */
export function bigBody(): Buffer {
  const b = Buffer.alloc(5 * 1024 * 1024);
  let x = 0x12345678;
  for (let i = 0; i < b.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = i < 256 ? i : x >>> 24;
  }
  return b;
}
