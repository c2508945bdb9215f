/**
 * `explain(err)`: what went wrong when sending, in plain words — the likely
 * cause and what to do about it — always quoting the server's own reply when
 * there was one. Used by `petrel send`; pure.
 */
import { replyText, type Reply } from "../smtp/reply.ts";
import { SmtpClientError } from "./smtp-error.ts";

const CERT_UNKNOWN = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UNABLE_TO_GET_ISSUER_CERT", "CERT_UNTRUSTED",
]);
const INSECURE = "(--insecure skips this check: use it only for testing, never with a real password over the internet.)";

function where(e: SmtpClientError): string {
  return e.host !== undefined ? `${e.host} port ${e.port}` : "the server";
}

function said(r: Reply | undefined): string {
  return r ? ` The server said: "${replyText(r)}".` : "";
}

function secs(ms: number | undefined): string {
  return ms === undefined ? "" : ` within ${ms / 1000 >= 1 ? Math.round(ms / 1000) : ms / 1000} s`;
}

export function explain(err: unknown): string {
  if (!(err instanceof SmtpClientError)) {
    const e = err as { code?: string; path?: string; message?: string } | null;
    if (e?.code === "ENOENT" && e.path) return `The file ${e.path} does not exist.`;
    if (e?.code === "EACCES" && e.path) return `The file ${e.path} cannot be read (permission denied).`;
    return err instanceof Error ? err.message : String(err);
  }
  const at = where(err);
  const r = err.reply;
  switch (err.kind) {
    case "connect":
      if (err.phase === "connect") {
        switch (err.code) {
          case "ECONNREFUSED":
            return `Nothing is listening on ${at}: the host or port is wrong, or the server is down.`;
          case "ENOTFOUND":
          case "EAI_NONAME":
          case "EAI_FAIL":
            return `The name ${err.host} does not exist in DNS: check the spelling.`;
          case "EAI_AGAIN":
            return `The name ${err.host} could not be looked up right now (DNS did not answer): check your network and try again.`;
          case "EHOSTUNREACH":
          case "ENETUNREACH":
          case "EHOSTDOWN":
          case "ENETDOWN":
            return `There is no network route to ${at}: check your network connection and the address.`;
          case "EADDRNOTAVAIL":
            return `Cannot connect to ${at} from this machine's address (${err.code}): check the address and the source address.`;
          default:
            return `Cannot connect to ${at}: ${err.message}.`;
        }
      }
      if (err.phase === "TLS") {
        return `${at} closed the connection during the TLS handshake: it may not speak TLS on this port, or it refused our TLS versions.`;
      }
      return `${at} closed the connection unexpectedly during ${err.phase}: the server may have a problem or consider us abusive; try again later.${said(r)}`;
    case "timeout":
      if (err.phase === "connect" && err.port === 25) {
        // The classic: residential and cloud networks drop outgoing port 25 (spam from infected or rented machines).
        return `No answer from ${at}${secs(err.timeoutMs)}: home and cloud networks usually block outgoing port 25, so your provider probably blocks it, not the server: ask the provider to open port 25, or send through a smarthost on port 587; otherwise a firewall drops the connection.`;
      }
      if (err.phase === "connect") {
        return `No answer from ${at}${secs(err.timeoutMs)}: a firewall or your provider probably blocks the port (many block port 25; try 587 with STARTTLS or 465 with implicit TLS).`;
      }
      if (err.phase === "greeting") {
        return `Connected to ${at}, but the server did not greet us${secs(err.timeoutMs)}: if this is an implicit-TLS port (465), use --tls implicit; otherwise the server is overloaded or is not a mail server.`;
      }
      if (err.phase === "TLS" || err.phase === "STARTTLS") {
        return `The TLS handshake with ${at} did not finish${secs(err.timeoutMs)}: the server may not speak TLS on this port.`;
      }
      return `${at} did not answer ${err.phase}${secs(err.timeoutMs)}: the server or the network is too slow or stuck; try again later.`;
    case "tls": {
      if (!err.code && err.phase === "STARTTLS" && !r) {
        return `${at} does not offer STARTTLS, so the connection cannot be encrypted: use --tls implicit on port 465, or ask the server's administrator. (--tls none sends without encryption: only for local tests.)`;
      }
      if (r) return `${at} refused to start TLS.${said(r)}`;
      const msg = err.cause instanceof Error ? err.cause.message : err.message;
      if (err.code === "ERR_TLS_CERT_ALTNAME_INVALID") {
        return `The server's certificate is not for the name ${err.host}: connect with the name the certificate was issued for (${msg}). ${INSECURE}`;
      }
      if (err.code === "CERT_HAS_EXPIRED") return `The server's certificate has expired: its administrator must renew it. ${INSECURE}`;
      if (err.code === "CERT_NOT_YET_VALID") return `The server's certificate is not valid yet: check this computer's clock. ${INSECURE}`;
      if (err.code && CERT_UNKNOWN.has(err.code)) {
        const self = err.code === "DEPTH_ZERO_SELF_SIGNED_CERT" || err.code === "SELF_SIGNED_CERT_IN_CHAIN";
        return `The server's certificate is ${self ? "self-signed" : "issued by an authority this computer does not know"} (${err.code}), so it is not trusted. ${INSECURE}`;
      }
      if (/wrong version number|packet length too long|unknown protocol/i.test(msg)) {
        return `${at} does not speak TLS from the first byte: use --tls starttls (ports 587 and 25) instead of implicit TLS.`;
      }
      return `The TLS handshake with ${at} failed (${err.code ?? "error"}): ${msg}.`;
    }
    case "auth": {
      if (!r) {
        if (/offers no authentication/.test(err.message)) {
          return `The server does not offer authentication on this connection; use --tls starttls or port 587/465.`;
        }
        return `Authentication with ${at} failed: ${err.message}.`;
      }
      if (r.code === 535 || r.status === "5.7.8") {
        return `The server refused the user name or password (${replyText(r)}): check them; some providers need an app password.`;
      }
      if (r.code === 534 || r.status === "5.7.9") return `The server wants a stronger way to log in, or an app password, for this account.${said(r)}`;
      if (r.code === 538 || r.status === "5.7.11") return `The server requires encryption before authentication: use --tls starttls or port 465.${said(r)}`;
      if (r.code >= 400 && r.code < 500) return `The server could not check the login right now (temporary failure): try again later.${said(r)}`;
      return `Authentication with ${at} failed.${said(r)}`;
    }
    case "protocol":
      return `${err.message}.`;
    case "reply":
      return explainReply(err, at);
  }
}

function explainReply(err: SmtpClientError, at: string): string {
  const r = err.reply;
  if (!r) return err.message;
  const st = r.status ?? "";
  const text = r.lines.join(" ");
  const rejected = err.rejected && err.rejected.length > 1 ? ` (${err.rejected.map((x) => `${x.address}: ${replyText(x.reply)}`).join("; ")})` : "";
  if (r.code === 421) return `${at} is not taking mail right now and closed the session: try again later.${said(r)}`;
  if (err.phase === "greeting") return `${at} refused the connection when it greeted us.${said(r)}`;
  if (r.code === 530 || st === "5.7.0" && /auth/i.test(text)) {
    return `The server requires authentication: give --user (and a password), over TLS.${said(r)}`;
  }
  if (st === "5.7.1" && /relay/i.test(text) || (r.code === 554 && err.phase === "RCPT" && /relay/i.test(text))) {
    return `The server will not relay to that domain without authentication: log in with --user on the submission port (587 or 465), or send to a recipient this server is responsible for.${said(r)}${rejected}`;
  }
  if (r.code === 552 || st === "5.3.4" || st === "5.2.3") return `The message is too big for the server: make it (or its attachments) smaller.${said(r)}`;
  if (st === "5.1.1" || (err.phase === "RCPT" && r.code === 550 && /unknown|no such|does not exist/i.test(text))) {
    return `The server says the recipient does not exist: check the address.${said(r)}${rejected}`;
  }
  if (err.phase === "MAIL" && (r.code === 553 || st === "5.7.1")) {
    return `The server will not accept mail from that sender address, e.g. because it is not one your login may use: check --from.${said(r)}`;
  }
  if (r.code >= 400 && r.code < 500) return `The server refused for now (temporary failure during ${err.phase}): try again later.${said(r)}${rejected}`;
  const what = err.phase === "RCPT" ? "the recipient" : err.phase === "MAIL" ? "the sender" : err.phase === "DATA" ? "the message" : err.phase;
  return `The server refused ${what}.${said(r)}${rejected}`;
}
