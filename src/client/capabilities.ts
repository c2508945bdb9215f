/**
 * What a server said it can do, from its EHLO reply (RFC 5321 §4.1.1.1: the
 * first line is the greeting, each further line "KEYWORD [params]").
 */
import type { Reply } from "../smtp/reply.ts";

export interface Capabilities {
  /** EHLO was accepted (false after a HELO fallback: no extensions). */
  esmtp: boolean;
  pipelining: boolean;
  /** RFC 1870 SIZE: undefined when not advertised, 0 when advertised without a limit. */
  size?: number;
  eightBitMime: boolean;
  smtputf8: boolean;
  chunking: boolean;
  dsn: boolean;
  starttls: boolean;
  /** SASL mechanisms, upper case. */
  auth: string[];
  requireTls: boolean;
  enhancedStatusCodes: boolean;
  /** RFC 9422 LIMITS: transactions per session (MAILMAX) and recipients per transaction (RCPTMAX), when announced. */
  limits: { mailMax?: number; rcptMax?: number };
  /** The extension lines as sent (without the greeting line). */
  raw: string[];
}

export const NO_CAPABILITIES: Capabilities = Object.freeze({
  esmtp: false, pipelining: false, eightBitMime: false, smtputf8: false, chunking: false, dsn: false,
  starttls: false, auth: [], requireTls: false, enhancedStatusCodes: false, limits: Object.freeze({}), raw: [],
}) as Capabilities;

export function parseCapabilities(ehlo: Reply): Capabilities {
  const caps: Capabilities = { ...NO_CAPABILITIES, esmtp: true, auth: [], limits: {}, raw: ehlo.lines.slice(1) };
  for (const line of caps.raw) {
    // "AUTH=PLAIN LOGIN" is the pre-RFC 4954 form some servers still send.
    const [keyword, ...params] = line.trim().split(/[ =]+/);
    switch (keyword.toUpperCase()) {
      case "PIPELINING": caps.pipelining = true; break;
      case "SIZE": {
        const n = params.length > 0 && /^[0-9]{1,20}$/.test(params[0]) ? Number(params[0]) : 0;
        caps.size = Number.isSafeInteger(n) ? n : 0;
        break;
      }
      case "8BITMIME": caps.eightBitMime = true; break;
      case "SMTPUTF8": caps.smtputf8 = true; break;
      case "CHUNKING": caps.chunking = true; break;
      case "DSN": caps.dsn = true; break;
      case "STARTTLS": caps.starttls = true; break;
      case "REQUIRETLS": caps.requireTls = true; break;
      case "ENHANCEDSTATUSCODES": caps.enhancedStatusCodes = true; break;
      case "LIMITS":
        caps.limits = parseLimits(line);
        break;
      case "AUTH":
        for (const m of params) {
          const u = m.toUpperCase();
          if (u !== "" && !caps.auth.includes(u)) caps.auth.push(u);
        }
        break;
    }
  }
  return caps;
}

/**
 * RFC 9422 §3: "LIMITS" SP limit-name "=" limit-value *(SP …); names are
 * case-insensitive, unknown ones are ignored, and so is a value that is not a
 * positive number (a limit of 0 would forbid the very thing announced).
 */
function parseLimits(line: string): Capabilities["limits"] {
  const limits: { mailMax?: number; rcptMax?: number } = {};
  for (const pair of line.trim().split(/\s+/).slice(1)) {
    const m = /^([A-Za-z0-9-]+)=([0-9]{1,9})$/.exec(pair);
    if (!m || Number(m[2]) < 1) continue;
    const name = m[1].toUpperCase();
    if (name === "MAILMAX") limits.mailMax = Number(m[2]);
    else if (name === "RCPTMAX") limits.rcptMax = Number(m[2]);
  }
  return limits;
}
