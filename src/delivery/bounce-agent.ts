import type { Now } from "../mail/clock.ts";
import type { Spool, QueueId } from "../spool/spool.ts";
import type { Envelope } from "../mail/envelope.ts";
import type { DsnRecipient, DsnSender } from "../queue/ports.ts";
import { composeDsn } from "./bounce.ts";

/**
 * The bounce agent: turns the queue's verdict on some recipients into a DSN
 * (delivery/bounce.ts) and puts it into the spool as a new message from the
 * null sender, so it is delivered like any other mail — and, being from
 * <>, never bounced itself (a double bounce is logged and dropped).
 */
export function createDsnSender(deps: { spool: Spool; hostname: string; clock: Now }): DsnSender {
  return async (id: QueueId, envelope: Envelope, arrival: Date, recipients: readonly DsnRecipient[]): Promise<QueueId | null> => {
    const now = new Date(deps.clock.now());
    const dsn = await composeDsn({
      queueId: id,
      envelope,
      recipients,
      reportingMta: deps.hostname,
      arrivalDate: arrival,
      now,
      originalMessage: () => deps.spool.readBody(id),
    });
    if (!dsn) return null;
    const writer = await deps.spool.create();
    try {
      await writer.write(dsn.message);
      await writer.commit({
        mailFrom: "",
        recipients: [{ address: dsn.to }],
        ...(dsn.needs8bit ? { body: "8BITMIME" as const } : {}),
        smtputf8: dsn.smtputf8,
        requireTls: false,
        client: { address: "127.0.0.1", port: 0, helo: deps.hostname, protocol: "local", role: "local" },
        receivedAt: now.getTime(),
      });
    } catch (err) {
      await writer.abort();
      throw err;
    }
    return writer.id;
  };
}
