/**
 * Where a service listens, written as Postfix writes it (smtpd_milters):
 * "inet:host:port" (an IPv6 host in brackets, "inet:[::1]:8891") or
 * "unix:/path/to/socket". Sendmail's "inet:port@host" is accepted too, since
 * mail filters document their own socket in that form (OpenDKIM's Socket).
 */

export type ServiceAddress =
  | { readonly kind: "inet"; readonly host: string; readonly port: number }
  | { readonly kind: "unix"; readonly path: string };

export const SERVICE_ADDRESS_ALLOWED = 'expected "inet:host:port" (e.g. "inet:127.0.0.1:11332", "inet:[::1]:8891") or "unix:/path/to/socket"';

export function parseServiceAddress(text: string): ServiceAddress | undefined {
  const colon = text.indexOf(":");
  if (colon === -1) return undefined;
  const kind = text.slice(0, colon).toLowerCase();
  const rest = text.slice(colon + 1);
  if (kind === "unix" || kind === "local") return rest.startsWith("/") ? { kind: "unix", path: rest } : undefined;
  if (kind !== "inet" && kind !== "inet6") return undefined;
  let host: string;
  let port: string;
  const at = rest.indexOf("@");
  if (at !== -1) {
    port = rest.slice(0, at);
    host = rest.slice(at + 1);
  } else if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close === -1 || rest[close + 1] !== ":") return undefined;
    host = rest.slice(1, close);
    port = rest.slice(close + 2);
  } else {
    const last = rest.lastIndexOf(":");
    if (last === -1) return undefined;
    host = rest.slice(0, last);
    port = rest.slice(last + 1);
  }
  host = host.replace(/^\[(.*)\]$/, "$1");
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return undefined;
  if (host === "" || /[\s/]/.test(host)) return undefined;
  return { kind: "inet", host, port: Number(port) };
}
