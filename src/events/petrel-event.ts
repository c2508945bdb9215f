/**
 * What happens to mail in Petrel, as events: a client connects, a check
 * refuses, a message is accepted and queued, each delivery attempt with the
 * remote host, its TLS and reply, a DSN, an administrator's hold or delete.
 * The boxes where these things happen (server/, policy/, intake/, queue/)
 * tell an `EventSink` they are given; what listens — the message trace, the
 * activity feed, the metrics, the admin API's live stream — is wired by
 * mta.ts, so none of those boxes imports the admin box or knows who listens.
 *
 * An event is a plain JSON value: the trace store writes it as one line.
 * This file depends on nothing in Petrel.
 */

/** The listener a client reached (mail/envelope.ts ListenerRole, repeated to keep this box free of imports). */
export type EventRole = "mx" | "submission" | "submissions" | "local";

/** Who sent a message, as the trace shows it. */
export interface EventClient {
  readonly address: string;
  readonly helo?: string;
  readonly role: EventRole;
  /** "TLSv1.3", when the session was encrypted. */
  readonly tls?: string;
  readonly cipher?: string;
  readonly authUser?: string;
}

/** What a check found about an accepted message (a verdict short of refusal, a reason). */
export interface CheckFinding {
  readonly check: string;
  readonly stage: string;
  /** accept, quarantine, discard … */
  readonly verdict: string;
  readonly reason?: string;
}

/** One delivery attempt's result for one recipient. */
export type DeliveryStatus = "delivered" | "deferred" | "bounced";

export type PetrelEventBody =
  /** A client connected (or was refused before the greeting: `refused` holds the reply). */
  | { readonly type: "connection"; readonly role: EventRole; readonly client: string; readonly refused?: string }
  /** The connection closed. */
  | { readonly type: "disconnection"; readonly role: EventRole }
  /** TLS was established on an inbound session (implicit or STARTTLS). */
  | { readonly type: "tls"; readonly direction: "in"; readonly role: EventRole; readonly version: string }
  /** An AUTH exchange failed. */
  | { readonly type: "auth-failure"; readonly role: EventRole; readonly client: string; readonly mechanism: string }
  /**
   * A command, a message or a connection was refused: by a check (`check`, at `stage`, for
   * `reason`), or by the protocol engine or the spool (`check` "smtp" or "spool").
   */
  | {
    readonly type: "rejected"; readonly check: string; readonly stage: string; readonly reason?: string; readonly reply: string;
    readonly client: string; readonly role: EventRole; readonly from?: string; readonly to?: string | readonly string[]; readonly queueId?: string;
  }
  /** A message is on stable storage (the 250 follows). `origin` "local": composed by Petrel (a DSN, a report). */
  | {
    readonly type: "accepted"; readonly queueId: string; readonly origin: "smtp" | "local"; readonly from: string; readonly to: readonly string[];
    readonly size: number; readonly client: EventClient; readonly authResults?: string; readonly findings?: readonly CheckFinding[];
    readonly held?: string; readonly folder?: string;
  }
  /** The spool's commit of one message took this long (metrics). */
  | { readonly type: "spool-commit"; readonly durationMs: number }
  /** The queue took the message: each recipient after alias expansion; an unknown one is bounced at once. */
  | { readonly type: "queued"; readonly queueId: string; readonly recipients: readonly { readonly address: string; readonly original: string; readonly status: string }[] }
  /** One delivery attempt's outcome for one recipient. */
  | {
    readonly type: "delivery"; readonly queueId: string; readonly recipient: string; readonly original?: string;
    readonly transport: string; readonly destination: string; readonly status: DeliveryStatus;
    /** RFC 3463 code. */
    readonly enhanced?: string;
    /** The remote reply or the local reason. */
    readonly reply?: string;
    readonly remoteMta?: string; readonly remoteAddress?: string;
    /** TLS version of the session that carried (or failed to carry) it; absent in plain text. */
    readonly tls?: string;
    /** How long the attempt took (ms). */
    readonly durationMs: number;
    readonly attempt: number;
    /** Accepted → delivered (ms), for a delivery. */
    readonly latencyMs?: number;
    /** When a deferred recipient is tried again (ISO 8601). */
    readonly retryAt?: string;
  }
  /** A recipient gave up on: the message is past its lifetime in the queue. */
  | { readonly type: "expired"; readonly queueId: string; readonly recipient: string; readonly reply: string }
  /** A DSN was sent to the message's sender (its own queue id is `dsnId`). */
  | { readonly type: "dsn"; readonly queueId: string; readonly dsnId: string; readonly action: string; readonly recipients: readonly string[] }
  /** An administrator's operation on a queued message. */
  | { readonly type: "admin"; readonly queueId: string; readonly action: "hold" | "release" | "delete" | "retry"; readonly by?: string }
  /** Every recipient is final: the message left the queue. */
  | { readonly type: "removed"; readonly queueId: string };

export type PetrelEventType = PetrelEventBody["type"];

/** An event as recorded: numbered in order (`seq`) and timed (`at`, ms since the epoch). */
export type PetrelEvent = PetrelEventBody & { readonly seq: number; readonly at: number };

/** Where the boxes tell what happened. Never blocks and never throws: it only takes note. */
export interface EventSink {
  emit(event: PetrelEventBody): void;
}

/** The sink of a box nobody listens to. */
export const noEvents: EventSink = { emit() {} };

/** Kinds that are about a message and belong to its trace. */
export const TRACE_TYPES: ReadonlySet<PetrelEventType> = new Set(["accepted", "queued", "delivery", "expired", "dsn", "admin", "removed", "rejected"]);

/** Kinds the activity feed shows. */
export const ACTIVITY_TYPES: ReadonlySet<PetrelEventType> = new Set(["accepted", "rejected", "delivery", "expired", "dsn", "admin"]);
