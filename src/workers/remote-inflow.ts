/**
 * An SMTP worker's inflow gate (Postfix's in_flow_delay across processes): the tokens are the
 * primary's, whose queue manager gives them back as deliveries start (queue/inflow.ts). The
 * primary tells every worker its state as it changes; while tokens are to spare (`open`) a MAIL
 * goes ahead at once and the worker only says that it spent one, so a server that keeps up pays
 * no round trip; while `paced` each MAIL asks and waits for the answer — which comes with a token
 * or once queue.inflowDelay has passed, timed by the primary. A state change on its way may let a
 * few messages through unpaced; the primary counts them all the same.
 */
import type { InflowGate, InflowState } from "../queue/inflow.ts";
import type { FromWorker } from "./messages.ts";

export class RemoteInflow implements InflowGate {
  private readonly send: (m: FromWorker) => Promise<void>;
  private state: InflowState = "off";
  private nextReq = 0;
  private readonly waiting = new Map<number, () => void>();

  constructor(send: (m: FromWorker) => Promise<void>) {
    this.send = send;
  }

  take(): Promise<void> | undefined {
    if (this.state === "off") return undefined;
    if (this.state === "open") {
      this.send({ t: "inflow-took" }).catch(() => {});
      return undefined;
    }
    const req = this.nextReq++;
    return new Promise<void>((resolve) => {
      this.waiting.set(req, resolve);
      // No primary to ask: the worker is going away; the session goes ahead rather than hang.
      this.send({ t: "inflow-take", req }).catch(() => this.go(req));
    });
  }

  follow(state: InflowState): void {
    this.state = state;
    if (state === "off") this.releaseAll();
  }

  go(req: number): void {
    const resolve = this.waiting.get(req);
    this.waiting.delete(req);
    resolve?.();
  }

  releaseAll(): void {
    for (const req of [...this.waiting.keys()]) this.go(req);
  }
}
