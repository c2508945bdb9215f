/**
 * The SMTP envelope (RFC 5321 §2.3.1) as Petrel keeps it with a message: the
 * reverse-path, the forward-paths with their DSN parameters, and the facts
 * about the session that later stages (queue, bounce, outbound client) need.
 * It is plain JSON-able data so the spool can store it without knowing SMTP.
 */
import type { HeaderEdit } from "./header-field.ts";

/** A mailbox as written in a path: local part (unquoted form) and domain. */
export interface Mailbox {
  /** The local part with quoting removed (RFC 5321 §4.1.2 Quoted-string is decoded). */
  readonly localPart: string;
  /** Domain name (lower-cased) or address literal including brackets, e.g. "[192.0.2.1]". */
  readonly domain: string;
}

/**
 * What a listener is for: "mx" takes mail for local domains from anyone
 * (port 25), "submission" takes mail from authenticated users after STARTTLS
 * (port 587, RFC 6409), "submissions" the same over implicit TLS (port 465,
 * RFC 8314).
 */
export const LISTENER_ROLES = ["mx", "submission", "submissions"] as const;
export type ListenerRole = (typeof LISTENER_ROLES)[number];

/** RFC 3461 §4.1 NOTIFY values. */
export type DsnNotify = "NEVER" | "SUCCESS" | "FAILURE" | "DELAY";

/** RFC 6152 BODY. */
export type BodyType = "7BIT" | "8BITMIME";
/** RFC 3461 §4.3 RET: the whole message or only its headers in a DSN. */
export type DsnReturn = "FULL" | "HDRS";

/** The MAIL FROM parameters Petrel speaks, as one transaction carries them (server and client alike). */
export interface MailParameters {
  /** RFC 1870 SIZE the sender declared. */
  readonly size?: number;
  readonly body?: BodyType;
  /** RFC 6531 SMTPUTF8. */
  readonly smtputf8: boolean;
  readonly ret?: DsnReturn;
  /** RFC 3461 ENVID, xtext-decoded. */
  readonly envid?: string;
  /** RFC 4954 §5 AUTH=, xtext-decoded; "<>" kept as is. */
  readonly auth?: string;
  /** RFC 8689 REQUIRETLS. */
  readonly requireTls: boolean;
}

/** The RCPT TO parameters Petrel speaks (RFC 3461 §4). */
export interface RcptParameters {
  /** NOTIFY; absent means the default (FAILURE, DELAY at the MTA's discretion). */
  readonly notify?: readonly DsnNotify[];
  /** ORCPT, kept as "addr-type;xtext-decoded-address" (addr-type lower-cased). */
  readonly orcpt?: string;
}

export interface Recipient extends RcptParameters {
  /** The forward-path as an address string "local@domain" (local part re-quoted when needed). */
  readonly address: string;
}

export interface Envelope {
  /** Reverse-path address; "" is the null reverse-path <> (bounces). */
  readonly mailFrom: string;
  readonly recipients: readonly Recipient[];
  /** Octets of the message as stored (trace headers included). */
  readonly size?: number;
  /** RFC 1870 SIZE the client declared, if any. */
  readonly declaredSize?: number;
  /** RFC 6152 BODY=8BITMIME / 7BIT. */
  readonly body?: BodyType;
  /** RFC 6531: the transaction used SMTPUTF8. */
  readonly smtputf8: boolean;
  /** RFC 3461 RET. */
  readonly ret?: DsnReturn;
  /** RFC 3461 ENVID (xtext-decoded). */
  readonly envid?: string;
  /** RFC 8689 REQUIRETLS: the outbound side must only relay over verified TLS. */
  readonly requireTls: boolean;
  /** Who handed the message to us. */
  readonly client: ClientInfo;
  /** When the 250 for this message was decided (ms since epoch). */
  readonly receivedAt: number;
  /**
   * Received: fields in the stored header section, this server's own
   * included: the hop count of RFC 5321 §6.3, kept so the queue can check it
   * before forwarding without reading the message. Absent on messages Petrel
   * composed itself (DSNs).
   */
  readonly hopCount?: number;
  /**
   * Header fields decided at the end of data (Authentication-Results, a
   * filter's fields), CRLF-terminated lines to put on top of the stored
   * message whenever it is read (spool/stored-message.ts): the body was on
   * its way to disk before they were known, and they are committed with
   * the envelope, in the same fsync.
   */
  readonly prepend?: string;
  /** Changes to the stored header section decided at the end of data, applied whenever the message is read. */
  readonly headerEdits?: readonly HeaderEdit[];
  /** Quarantined: the message enters the queue on hold, for this reason (Postfix HOLD). */
  readonly hold?: string;
  /** Local delivery puts the message into this Maildir++ folder of each mailbox (e.g. "Junk") instead of the inbox. */
  readonly folder?: string;
}

export interface ClientInfo {
  /** The client's IP (after PROXY protocol, the real one). */
  readonly address: string;
  readonly port: number;
  /** Reverse DNS name if known. */
  readonly hostname?: string;
  /** The EHLO/HELO argument. */
  readonly helo: string;
  /** "ESMTP", "ESMTPS", "ESMTPSA", ... per RFC 3848, for the Received header. */
  readonly protocol: string;
  /** TLS version and cipher when the session was encrypted. */
  readonly tls?: { readonly version: string; readonly cipher: string };
  /** The SASL authorization identity, when the client authenticated. */
  readonly authUser?: string;
  /** The listener role the message came in on. */
  readonly role: ListenerRole | "local";
}
