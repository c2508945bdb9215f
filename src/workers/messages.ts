/**
 * What the primary and its SMTP workers say to each other over the IPC
 * channel of `child_process.fork` (serialization "advanced": Buffers and the
 * parsed configuration pass as they are). A worker serves sessions; the
 * primary holds the spool, so every spool step of a message is a message
 * here, and the 250 after DATA waits for `committed`.
 */
import type { Config } from "../config/schema.ts";
import type { SpoolReply, SpoolRequest } from "../spool/remote-spool.ts";
import type { PetrelEventBody } from "../events/petrel-event.ts";
import type { AdmitResult } from "../policy/checks/client-limits.ts";
import type { InflowState } from "../queue/inflow.ts";

/**
 * The primary's verdict on a connection it hands over: by its count of connections
 * per client across all workers (`ok`, `client-full`, `server-full`) and of AUTH
 * failures told by every worker (`banned`), or `local` when it cannot know the
 * client (a PROXY header names it) and the worker counts.
 */
export type HandoverVerdict = AdmitResult | "local";

export type ToWorker =
  | {
    readonly t: "start"; readonly index: number; readonly config: Config;
    /** Where each configured listener is bound (the primary bound them; port 0 became a real port). */
    readonly bound: readonly { readonly address: string; readonly port: number }[];
    readonly errorSleep?: number;
  }
  /** Sent with the socket as its handle. */
  | { readonly t: "connection"; readonly conn: number; readonly listener: number; readonly verdict: HandoverVerdict }
  | SpoolReply
  | { readonly t: "reload"; readonly req: number; readonly config: Config }
  /** The primary's inflow control changed state (queue/inflow.ts); sent to each worker as it starts too. */
  | { readonly t: "inflow-state"; readonly state: InflowState }
  /** The token asked for by `inflow-take` (or its delay has passed): the paced MAIL may be answered. */
  | { readonly t: "inflow-go"; readonly req: number }
  /** The answer to `auth-failed`: whether the address is banned now, by the count across all workers. */
  | { readonly t: "auth-verdict"; readonly req: number; readonly banned: boolean }
  | { readonly t: "close" };

export type FromWorker =
  | { readonly t: "ready" }
  | { readonly t: "start-failed"; readonly message: string }
  | SpoolRequest
  | { readonly t: "events"; readonly events: readonly PetrelEventBody[] }
  /** A connection handed over has closed. */
  | { readonly t: "released"; readonly conn: number }
  | { readonly t: "reloaded"; readonly req: number; readonly error?: string }
  /** A message went ahead at MAIL while the state was `open`: it spent a token. */
  | { readonly t: "inflow-took" }
  /** While `paced`: a MAIL waits for a token (answered by `inflow-go`). */
  | { readonly t: "inflow-take"; readonly req: number }
  /** A failed AUTH from this client address (answered by `auth-verdict`). */
  | { readonly t: "auth-failed"; readonly req: number; readonly address: string };
