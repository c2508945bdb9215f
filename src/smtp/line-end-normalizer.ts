import type { BareNewlinePolicy } from "./data-decoder.ts";

/**
 * Line ends in BDAT content (RFC 3030): there is no end-of-data marker to
 * smuggle, but the stored message must still have CRLF line ends only, as
 * DATA content does. A bare LF becomes CRLF; bare LF and bare CR are recorded
 * so the "reject" policy can refuse the message.
 */

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");

export class LineEndNormalizer {
  private lastByte = -1;
  bareLfSeen = false;
  bareCrSeen = false;
  private readonly policy: BareNewlinePolicy;

  constructor(policy: BareNewlinePolicy) {
    this.policy = policy;
  }

  get bareNewlineSeen(): boolean {
    return this.bareLfSeen || this.bareCrSeen;
  }

  feed(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const n = chunk.length;
    if (n === 0) return out;
    // Bare CR is looked for only under "reject" (as in DataDecoder), here and below alike.
    if (this.policy === "reject" && this.lastByte === CR && chunk[0] !== LF) this.bareCrSeen = true;
    let from = 0;
    let lf = chunk.indexOf(LF);
    while (lf !== -1) {
      const crBefore = lf > 0 ? chunk[lf - 1] === CR : this.lastByte === CR;
      if (!crBefore) {
        this.bareLfSeen = true;
        if (lf > from) out.push(chunk.subarray(from, lf));
        out.push(CRLF);
        from = lf + 1;
      }
      lf = chunk.indexOf(LF, lf + 1);
    }
    if (from < n) out.push(chunk.subarray(from));
    if (this.policy === "reject" && !this.bareCrSeen) {
      for (let i = chunk.indexOf(CR); i !== -1; i = chunk.indexOf(CR, i + 1)) {
        if (i + 1 < n && chunk[i + 1] !== LF) {
          this.bareCrSeen = true;
          break;
        }
      }
    }
    this.lastByte = chunk[n - 1];
    return out;
  }

  /** Content must end with CRLF; add one if the client's did not. */
  finish(): Buffer[] {
    if (this.lastByte === -1 || this.lastByte === LF) return [];
    if (this.lastByte === CR) return [Buffer.from("\n")];
    return [CRLF];
  }
}
