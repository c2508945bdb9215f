/**
 * CRLF → LF for files that use the local line end (Maildir), streaming: a CR
 * at the end of a chunk waits for the next chunk's first byte; a bare CR is
 * content and stays.
 */
export class CrlfToLf {
  private pendingCr = false;

  convert(chunk: Buffer): Buffer {
    const out = Buffer.allocUnsafe(chunk.length + 1);
    let o = 0;
    let i = 0;
    if (this.pendingCr) {
      this.pendingCr = false;
      if (chunk.length === 0) {
        this.pendingCr = true;
        return out.subarray(0, 0);
      }
      if (chunk[0] !== 0x0a) out[o++] = 0x0d;
    }
    const end = chunk.length > 0 && chunk[chunk.length - 1] === 0x0d ? chunk.length - 1 : chunk.length;
    while (i < end) {
      const cr = chunk.indexOf(0x0d, i);
      if (cr === -1 || cr >= end) {
        o += chunk.copy(out, o, i, end);
        i = end;
        break;
      }
      o += chunk.copy(out, o, i, cr);
      if (chunk[cr + 1] !== 0x0a) out[o++] = 0x0d; // bare CR is content
      i = cr + 1;
    }
    if (end < chunk.length) this.pendingCr = true;
    return out.subarray(0, o);
  }

  /** Bytes still held back (a final bare CR). */
  flush(): Buffer {
    if (!this.pendingCr) return Buffer.alloc(0);
    this.pendingCr = false;
    return Buffer.from("\r");
  }
}

export function countLf(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}
