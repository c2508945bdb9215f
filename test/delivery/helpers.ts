import { Readable } from "node:stream";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import type { Envelope } from "../../src/mail/envelope.ts";
import type { DeliveryAgent, DeliveryOutcome, DeliveryRequest } from "../../src/queue/ports.ts";

export function envelope(mailFrom: string, recipients: string[], extra: Partial<Envelope> = {}): Envelope {
  return {
    mailFrom,
    recipients: recipients.map((address) => ({ address })),
    smtputf8: false,
    requireTls: false,
    client: { address: "127.0.0.1", port: 1234, helo: "client.test", protocol: "ESMTP", role: "mx" },
    receivedAt: 0,
    ...extra,
  };
}

/** A stream of `content` in chunks of `chunkSize` bytes. */
export function chunked(content: Buffer, chunkSize: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < content.length; i += chunkSize) parts.push(content.subarray(i, i + chunkSize));
  return Readable.from(parts);
}

export function request(content: Buffer, mailFrom: string, recipients: string[], chunkSize = 7, extra: Partial<Envelope> = {}): DeliveryRequest {
  return {
    queueId: "TESTQID",
    envelope: envelope(mailFrom, recipients, extra),
    recipients,
    body: () => chunked(content, chunkSize),
  };
}

export async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-delivery-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** CRLF → LF, as a Maildir file holds a message. */
export function lf(s: string | Buffer): Buffer {
  return Buffer.from(Buffer.from(s).toString("latin1").replace(/\r\n/g, "\n"), "latin1");
}

/**
 * Deliver and return the outcomes in the order of the request's recipients,
 * each looked up by its address; fails unless there is exactly one outcome
 * per recipient.
 */
export async function deliverAll(agent: DeliveryAgent, req: DeliveryRequest): Promise<DeliveryOutcome[]> {
  const outcomes = await agent.deliver(req);
  assert.deepEqual([...outcomes.keys()].sort(), [...new Set(req.recipients)].sort(), "one outcome per recipient, by address");
  return req.recipients.map((r) => outcomes.get(r)!);
}
