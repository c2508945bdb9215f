/**
 * The server name (SNI, RFC 6066 §3) and the offered application protocols
 * (ALPN, RFC 7301) of a TLS ClientHello, read before the handshake starts.
 *
 * Node chooses a certificate from the server name only; TLS-ALPN-01
 * (RFC 8737) needs a different certificate when the client offers
 * "acme-tls/1", so the listener looks at the ClientHello first. The bytes
 * are only read here, then handed to TLS unchanged.
 */

export type ClientHelloResult =
  | { readonly status: "incomplete" }
  | { readonly status: "invalid"; readonly reason: string }
  | { readonly status: "ok"; readonly servername: string | undefined; readonly alpn: readonly string[] };

/** A ClientHello larger than this is refused (real ones are a few KiB, post-quantum key shares included). */
export const MAX_CLIENT_HELLO = 64 * 1024;

const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;

export function parseClientHello(data: Buffer): ClientHelloResult {
  // Gather the handshake bytes from as many records as it spans (RFC 8446 §5.1).
  const chunks: Buffer[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (need < 0 || have < need) {
    if (data.length < off + 5) return incompleteOr(data);
    if (data[off] !== HANDSHAKE) return invalid("not a TLS handshake record");
    const len = data.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return invalid("bad record length");
    if (data.length < off + 5 + len) return incompleteOr(data);
    chunks.push(data.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      const head = Buffer.concat(chunks);
      if (head[0] !== CLIENT_HELLO) return invalid("first handshake message is not a ClientHello");
      need = 4 + head.readUIntBE(1, 3);
      if (need > MAX_CLIENT_HELLO) return invalid("ClientHello too large");
    }
  }
  return parseBody(Buffer.concat(chunks).subarray(4, need));
}

function incompleteOr(data: Buffer): ClientHelloResult {
  return data.length > MAX_CLIENT_HELLO ? invalid("ClientHello too large") : { status: "incomplete" };
}

function invalid(reason: string): ClientHelloResult {
  return { status: "invalid", reason };
}

function parseBody(b: Buffer): ClientHelloResult {
  try {
    let p = 2 + 32; // legacy_version, random
    p += 1 + b[p]; // session id
    p += 2 + b.readUInt16BE(p); // cipher suites
    p += 1 + b[p]; // compression methods
    let servername: string | undefined;
    let alpn: string[] = [];
    if (p === b.length) return { status: "ok", servername, alpn };
    const end = p + 2 + b.readUInt16BE(p);
    if (end > b.length) return invalid("extensions overrun the ClientHello");
    p += 2;
    while (p + 4 <= end) {
      const type = b.readUInt16BE(p);
      const len = b.readUInt16BE(p + 2);
      const ext = b.subarray(p + 4, p + 4 + len);
      if (ext.length !== len) return invalid("extension overruns the ClientHello");
      if (type === EXT_SERVER_NAME) servername = serverName(ext);
      else if (type === EXT_ALPN) alpn = protocols(ext);
      p += 4 + len;
    }
    return { status: "ok", servername, alpn };
  } catch {
    return invalid("truncated ClientHello");
  }
}

function serverName(ext: Buffer): string | undefined {
  let p = 2; // server_name_list length
  while (p + 3 <= ext.length) {
    const type = ext[p];
    const len = ext.readUInt16BE(p + 1);
    if (type === 0) return ext.subarray(p + 3, p + 3 + len).toString("ascii").toLowerCase();
    p += 3 + len;
  }
  return undefined;
}

function protocols(ext: Buffer): string[] {
  const out: string[] = [];
  let p = 2; // protocol_name_list length
  while (p < ext.length) {
    const len = ext[p];
    out.push(ext.subarray(p + 1, p + 1 + len).toString("latin1"));
    p += 1 + len;
  }
  return out;
}
