import type { BareNewlinePolicy } from "./data-decoder.ts";
import type { Extension } from "./extensions.ts";

/** What a server session is configured with: the listener's role and the limits. */

export interface SessionLimits {
  /** RFC 1870 SIZE, in octets of content. */
  readonly messageSize: number;
  /** RFC 5321 §4.5.3.1.8 recipients per transaction. */
  readonly recipients: number;
  /** RFC 9422 MAILMAX: transactions per connection. */
  readonly messagesPerConnection: number;
  /** Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 says 512; extensions add). */
  readonly commandLine: number;
  /** Errors before every reply is delayed (Postfix smtpd_soft_error_limit). */
  readonly softErrors: number;
  /** Errors before the connection is closed (Postfix smtpd_hard_error_limit). */
  readonly hardErrors: number;
}

export interface SessionOptions {
  readonly hostname: string;
  /** Text after "220 hostname " in the greeting. */
  readonly banner: string;
  readonly limits: SessionLimits;
  readonly bareNewline: BareNewlinePolicy;
  /** STARTTLS can be offered (a certificate exists and the connection is not yet TLS). */
  readonly startTlsAvailable: boolean;
  /** The connection is TLS from the first byte (port 465, RFC 8314). */
  readonly implicitTls: { readonly version: string; readonly cipher: string } | null;
  /** SASL mechanisms to offer once TLS is up; empty disables AUTH. */
  readonly authMechanisms: readonly string[];
  /** MAIL needs a prior successful AUTH (submission roles). */
  readonly requireAuth: boolean;
  /** Delay used once the soft error limit is passed (injected: no clock here). */
  readonly errorDelay?: () => Promise<void>;
  /** Extensions this listener neither advertises nor accepts (see extensions.ts). */
  readonly hide?: readonly Extension[];
}
