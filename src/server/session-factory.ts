import type { Logger } from "pino";
import type { Reply } from "../smtp/reply.ts";
import type { SessionHandler } from "../smtp/session-handler.ts";
import type { ClientFacts } from "../policy/check.ts";

/**
 * What the server is given to serve a connection (go-smtp's Backend): for
 * each client that connects, a handler for the protocol engine's decisions,
 * or a Reply that refuses it — sent instead of the greeting (421 or 554),
 * then the connection closes. The server decides nothing and stores nothing;
 * `mta.ts` builds the factory (intake/smtp-reception.ts).
 */
export interface SessionFactory {
  open(client: ClientFacts, log: Logger): Promise<SessionHandler | Reply>;
}
