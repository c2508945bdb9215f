/**
 * Putting a report mail into Petrel's own queue, the way the bounce agent puts a DSN there
 * (delivery/bounce-agent.ts): written to the spool from the null reverse-path — a report that
 * cannot be delivered is not bounced to anyone — then handed to the queue, which delivers and
 * retries it like any other message.
 */
import type { Now } from "../mail/clock.ts";
import type { QueueId, Spool } from "../spool/spool.ts";

export function createReportSubmitter(deps: { spool: Spool; enqueue: (id: QueueId) => void; hostname: string; clock: Now }): (message: Buffer, to: readonly string[]) => Promise<QueueId> {
  return async (message, to) => {
    const writer = await deps.spool.create();
    try {
      await writer.write(message);
      await writer.commit({
        mailFrom: "",
        recipients: to.map((address) => ({ address })),
        smtputf8: false,
        requireTls: false,
        client: { address: "127.0.0.1", port: 0, helo: deps.hostname, protocol: "local", role: "local" },
        receivedAt: deps.clock.now(),
      });
    } catch (err) {
      await writer.abort();
      throw err;
    }
    deps.enqueue(writer.id);
    return writer.id;
  };
}
