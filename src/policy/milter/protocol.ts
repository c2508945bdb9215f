/**
 * The Sendmail mail filter (milter) protocol, version 6, as the MTA speaks
 * it: the wire format and the names libmilter gives its codes (mfdef.h).
 * There is no RFC; the reference is Sendmail's libmilter and the
 * implementations that interoperate with it (Postfix's milter8).
 *
 * A packet is a 32-bit big-endian length, then that many octets: a one-octet
 * command (MTA → filter, SMFIC_*) or response (filter → MTA, SMFIR_*), then
 * its data. Strings in the data end with NUL; numbers are 32-bit big-endian,
 * except the client port of SMFIC_CONNECT (16-bit).
 *
 * Pure: bytes in, bytes out.
 */

export const MILTER_VERSION = 6;
/** The largest SMFIC_BODY chunk (libmilter's MILTER_CHUNK_SIZE). */
export const MILTER_CHUNK_SIZE = 65535;

// Commands, MTA → filter.
export const SMFIC_ABORT = "A";
export const SMFIC_BODY = "B";
export const SMFIC_CONNECT = "C";
export const SMFIC_MACRO = "D";
export const SMFIC_BODYEOB = "E";
export const SMFIC_HELO = "H";
export const SMFIC_HEADER = "L";
export const SMFIC_MAIL = "M";
export const SMFIC_EOH = "N";
export const SMFIC_OPTNEG = "O";
export const SMFIC_QUIT = "Q";
export const SMFIC_RCPT = "R";
export const SMFIC_DATA = "T";

// Responses, filter → MTA.
export const SMFIR_ADDRCPT = "+";
export const SMFIR_DELRCPT = "-";
export const SMFIR_ADDRCPT_PAR = "2";
export const SMFIR_SHUTDOWN = "4";
export const SMFIR_ACCEPT = "a";
export const SMFIR_REPLBODY = "b";
export const SMFIR_CONTINUE = "c";
export const SMFIR_DISCARD = "d";
export const SMFIR_CHGFROM = "e";
export const SMFIR_CONN_FAIL = "f";
export const SMFIR_ADDHEADER = "h";
export const SMFIR_INSHEADER = "i";
export const SMFIR_CHGHEADER = "m";
export const SMFIR_PROGRESS = "p";
export const SMFIR_QUARANTINE = "q";
export const SMFIR_REJECT = "r";
export const SMFIR_SKIP = "s";
export const SMFIR_TEMPFAIL = "t";
export const SMFIR_REPLYCODE = "y";

// Actions the filter may take at end of message (SMFIF_*), negotiated in SMFIC_OPTNEG.
export const SMFIF_ADDHDRS = 0x01;
export const SMFIF_CHGBODY = 0x02;
export const SMFIF_ADDRCPT = 0x04;
export const SMFIF_DELRCPT = 0x08;
export const SMFIF_CHGHDRS = 0x10;
export const SMFIF_QUARANTINE = 0x20;
export const SMFIF_CHGFROM = 0x40;
export const SMFIF_ADDRCPT_PAR = 0x80;
export const SMFIF_SETSYMLIST = 0x100;

// Protocol steps (SMFIP_*): steps the filter does not want (NO*), steps it will not answer (NR_*).
export const SMFIP_NOCONNECT = 0x1;
export const SMFIP_NOHELO = 0x2;
export const SMFIP_NOMAIL = 0x4;
export const SMFIP_NORCPT = 0x8;
export const SMFIP_NOBODY = 0x10;
export const SMFIP_NOHDRS = 0x20;
export const SMFIP_NOEOH = 0x40;
export const SMFIP_NR_HDR = 0x80;
export const SMFIP_NOUNKNOWN = 0x100;
export const SMFIP_NODATA = 0x200;
export const SMFIP_SKIP = 0x400;
export const SMFIP_RCPT_REJ = 0x800;
export const SMFIP_NR_CONN = 0x1000;
export const SMFIP_NR_HELO = 0x2000;
export const SMFIP_NR_MAIL = 0x4000;
export const SMFIP_NR_RCPT = 0x8000;
export const SMFIP_NR_DATA = 0x10000;
export const SMFIP_NR_UNKN = 0x20000;
export const SMFIP_NR_EOH = 0x40000;
export const SMFIP_NR_BODY = 0x80000;
export const SMFIP_HDR_LEADSPC = 0x100000;

// Address families in SMFIC_CONNECT.
export const SMFIA_UNKNOWN = "U";
export const SMFIA_UNIX = "L";
export const SMFIA_INET = "4";
export const SMFIA_INET6 = "6";

/** Macro stages (SMFIM_*) in the filter's SMFIR_SETSYMLIST lists, by the command they go with. */
export const MACRO_STAGE_COMMAND: Readonly<Record<number, string>> = {
  0: SMFIC_CONNECT,
  1: SMFIC_HELO,
  2: SMFIC_MAIL,
  3: SMFIC_RCPT,
  4: SMFIC_DATA,
  5: SMFIC_BODYEOB,
  6: SMFIC_EOH,
};

export interface Packet {
  /** The command or response code, one character. */
  readonly code: string;
  readonly data: Buffer;
}

export class MilterProtocolError extends Error {
  override readonly name = "MilterProtocolError";
}

/** One item of packet data: a NUL-terminated string, a raw buffer, or a 32-bit number. */
export type Field = { readonly string: string | Buffer } | { readonly raw: Buffer } | { readonly uint32: number } | { readonly uint16: number };

const NUL = Buffer.alloc(1);

/** A packet with its length prefix, ready for the socket. */
export function encodePacket(code: string, ...fields: Field[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4), Buffer.from(code, "latin1")];
  for (const f of fields) {
    if ("string" in f) {
      // A NUL inside would end the string early on the other side: it cannot be sent.
      const bytes = typeof f.string === "string" ? Buffer.from(f.string, "utf8") : f.string;
      parts.push(bytes.includes(0) ? Buffer.from(bytes.filter((b) => b !== 0)) : bytes, NUL);
    } else if ("raw" in f) {
      parts.push(f.raw);
    } else if ("uint32" in f) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(f.uint32 >>> 0);
      parts.push(b);
    } else {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(f.uint16 & 0xffff);
      parts.push(b);
    }
  }
  const packet = Buffer.concat(parts);
  packet.writeUInt32BE(packet.length - 4, 0);
  return packet;
}

/**
 * Splits the filter's byte stream into packets. A length of 0 or above
 * `maxLength` is a protocol error (the stream cannot be trusted after it).
 */
export class PacketReader {
  private readonly maxLength: number;
  private pending: Buffer[] = [];
  private pendingLength = 0;

  constructor(maxLength: number) {
    this.maxLength = maxLength;
  }

  feed(chunk: Buffer): Packet[] {
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    const out: Packet[] = [];
    for (;;) {
      if (this.pendingLength < 4) return out;
      const buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
      this.pending = [buf];
      const length = buf.readUInt32BE(0);
      if (length < 1 || length > this.maxLength) {
        throw new MilterProtocolError(`packet length ${length} out of range 1..${this.maxLength}`);
      }
      if (buf.length < 4 + length) return out;
      out.push({ code: String.fromCharCode(buf[4]), data: Buffer.from(buf.subarray(5, 4 + length)) });
      const rest = buf.subarray(4 + length);
      this.pending = rest.length > 0 ? [rest] : [];
      this.pendingLength = rest.length;
    }
  }
}

/** Reads the fields of a packet's data in order; every read checks the length. */
export class DataCursor {
  private readonly data: Buffer;
  private at = 0;
  private readonly what: string;

  constructor(data: Buffer, what: string) {
    this.data = data;
    this.what = what;
  }

  get remaining(): number {
    return this.data.length - this.at;
  }

  uint32(): number {
    if (this.remaining < 4) throw new MilterProtocolError(`${this.what}: data too short for a number`);
    const v = this.data.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  /** A NUL-terminated string, as bytes (header values may be any octets). */
  bytes(): Buffer {
    const end = this.data.indexOf(0, this.at);
    if (end === -1) throw new MilterProtocolError(`${this.what}: string without its NUL terminator`);
    const s = this.data.subarray(this.at, end);
    this.at = end + 1;
    return s;
  }

  string(): string {
    return this.bytes().toString("utf8");
  }

  /** What is left, up to a NUL if there is one (SMFIR_REPLYCODE and SMFIR_QUARANTINE may omit it). */
  rest(): string {
    const end = this.data.indexOf(0, this.at);
    const s = this.data.subarray(this.at, end === -1 ? this.data.length : end);
    this.at = this.data.length;
    return s.toString("utf8");
  }

  end(): void {
    if (this.remaining !== 0) throw new MilterProtocolError(`${this.what}: ${this.remaining} unexpected octets after the data`);
  }
}
