import { encodeReply, type Reply } from "./reply.ts";

/**
 * The replies a session owes the client, gathered until the next flush so
 * that pipelined commands are answered in one write (RFC 2920 §3.2), and the
 * count of refusals behind them: past the soft limit every reply is slowed,
 * at the hard limit the session is closed (Postfix's smtpd_soft_error_limit
 * and smtpd_hard_error_limit).
 */
export class ReplyOutput {
  private out: Buffer[] = [];
  private errors = 0;
  private readonly softErrors: number;
  private readonly hardErrors: number;
  /** RFC 2034 §3: enhanced status codes are sent only where ENHANCEDSTATUSCODES is advertised. */
  private readonly enhancedCodes: boolean;

  constructor(limits: { readonly softErrors: number; readonly hardErrors: number }, enhancedCodes: boolean) {
    this.softErrors = limits.softErrors;
    this.hardErrors = limits.hardErrors;
    this.enhancedCodes = enhancedCodes;
  }

  add(r: Reply): void {
    this.out.push(encodeReply(this.enhancedCodes || r.status === undefined ? r : { ...r, status: undefined }));
  }

  /** Count a 4xx/5xx reply; true when the hard limit is reached. */
  countError(): boolean {
    this.errors++;
    return this.errors >= this.hardErrors;
  }

  /** Postfix counts errors "without delivering mail": a delivered message forgives them. */
  forgiveErrors(): void {
    this.errors = 0;
  }

  /** Whether replies should be slowed down (soft error limit reached). */
  get overSoftLimit(): boolean {
    return this.errors >= this.softErrors;
  }

  /** What is owed, as one buffer (null when nothing is), and nothing is owed any more. */
  take(): Buffer | null {
    const out = this.out;
    if (out.length === 0) return null;
    this.out = [];
    return out.length === 1 ? out[0] : Buffer.concat(out);
  }
}
