import type { Readable } from "node:stream";
import type { Now } from "../mail/clock.ts";
import type { QueueId } from "../spool/spool.ts";
import type { Envelope } from "../mail/envelope.ts";
import type { DsnRecipient, DsnSender, SubmitMessage } from "../queue/ports.ts";
import { composeDsn } from "./bounce.ts";

/**
 * The bounce agent: turns the queue's verdict on some recipients into a DSN
 * (delivery/bounce.ts) and hands it to the intake as a new message from the
 * null sender, so it is stored and delivered like any other mail — and,
 * being from <>, never bounced itself (a double bounce is logged and
 * dropped). The intake builds its envelope and tells the queue.
 */
export function createDsnSender(deps: { submit: SubmitMessage; hostname: string; clock: Now }): DsnSender {
  return async (id: QueueId, envelope: Envelope, arrival: Date, recipients: readonly DsnRecipient[], original: () => Readable): Promise<QueueId | null> => {
    const dsn = await composeDsn({
      queueId: id,
      envelope,
      recipients,
      reportingMta: deps.hostname,
      arrivalDate: arrival,
      now: new Date(deps.clock.now()),
      originalMessage: original,
    });
    if (!dsn) return null;
    return deps.submit({ mailFrom: "", recipients: [dsn.to], content: dsn.message, needs8bit: dsn.needs8bit, smtputf8: dsn.smtputf8 });
  };
}
