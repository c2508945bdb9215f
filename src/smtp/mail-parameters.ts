/**
 * ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2):
 *
 *   Mail-parameters = esmtp-param *(SP esmtp-param)
 *   esmtp-param     = esmtp-keyword ["=" esmtp-value]
 *   esmtp-keyword   = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 *   esmtp-value     = 1*(%d33-60 / %d62-126)   ; RFC 6531 adds UTF8-non-ascii
 *
 * Supported: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
 * RET / ENVID / NOTIFY / ORCPT (RFC 3461), AUTH (RFC 4954 §5),
 * REQUIRETLS (RFC 8689). Each is recognised only when its extension is
 * enabled (i.e. advertised in the EHLO reply).
 *
 * Replies (all with enhanced code 5.5.4 unless noted):
 * - unknown or not-enabled keyword, or a keyword of the other command
 *   (e.g. NOTIFY on MAIL)           → 555 "unsupported parameter KW"
 * - BODY=BINARYMIME (RFC 3030; Petrel offers CHUNKING but not BINARYMIME)
 *                                   → 555 "unsupported parameter value BODY=BINARYMIME"
 * - duplicate keyword               → 501
 * - malformed parameter or value    → 501
 * - SIZE of up to 20 digits (RFC 1870 size-value) that is too large to
 *   represent exactly (> 2^53-1)    → 552 5.3.4 (it exceeds any limit)
 * Values of BODY, RET and NOTIFY are case-insensitive (ABNF strings).
 * Decoded ENVID must be printable ASCII; decoded ORCPT and AUTH must not
 * contain control characters (they end up in DSNs and headers).
 * Extra spaces between parameters are tolerated; tabs are not (controls).
 *
 * Pure: no I/O.
 */
import { decodeUtf8AddrXtext, decodeXtext } from "./xtext.ts";
import type { MailParameters, RcptParameters } from "../mail/envelope.ts";

export type ParamError = { ok: false; code: 501 | 504 | 552 | 555; status: string; text: string };

export type { MailParameters, RcptParameters };

/** The parameters while they are parsed one by one. */
type Building<T> = { -readonly [K in keyof T]: T[K] };

const MAX_ENVID = 100; // RFC 3461 §4.4
const MAX_ORCPT = 500; // RFC 3461 §4.2

function syntax(text: string): ParamError {
  return { ok: false, code: 501, status: "5.5.4", text };
}
function unsupported(text: string): ParamError {
  return { ok: false, code: 555, status: "5.5.4", text };
}

type Param = { keyword: string; value: string | undefined };

function splitParams(rest: string): { ok: true; params: Param[] } | ParamError {
  const params: Param[] = [];
  for (const token of rest.split(" ")) {
    if (token === "") continue;
    if (/[\x00-\x1f\x7f]/.test(token)) return syntax("control character in parameters");
    const eq = token.indexOf("=");
    const keyword = eq < 0 ? token : token.slice(0, eq);
    const value = eq < 0 ? undefined : token.slice(eq + 1);
    if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(keyword)) return syntax("malformed parameter");
    const kw = keyword.toUpperCase();
    if (value !== undefined && (value === "" || value.includes("="))) {
      return syntax(`malformed value for parameter ${kw}`);
    }
    params.push({ keyword: kw, value });
  }
  return { ok: true, params };
}

function noValue(p: Param): ParamError | null {
  return p.value === undefined ? null : syntax(`parameter ${p.keyword} takes no value`);
}

function needValue(p: Param): string | ParamError {
  return p.value === undefined ? syntax(`parameter ${p.keyword} needs a value`) : p.value;
}

const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

export function parseMailParameters(
  rest: string,
  enabled: { size: boolean; eightBitMime: boolean; smtputf8: boolean; dsn: boolean; auth: boolean; requireTls: boolean },
): { ok: true; params: MailParameters } | ParamError {
  const split = splitParams(rest);
  if (!split.ok) return split;
  const params: Building<MailParameters> = { smtputf8: false, requireTls: false };
  const seen = new Set<string>();
  for (const p of split.params) {
    const on =
      (p.keyword === "SIZE" && enabled.size) ||
      (p.keyword === "BODY" && enabled.eightBitMime) ||
      (p.keyword === "SMTPUTF8" && enabled.smtputf8) ||
      ((p.keyword === "RET" || p.keyword === "ENVID") && enabled.dsn) ||
      (p.keyword === "AUTH" && enabled.auth) ||
      (p.keyword === "REQUIRETLS" && enabled.requireTls);
    if (!on) return unsupported(`unsupported parameter ${p.keyword}`);
    if (seen.has(p.keyword)) return syntax(`duplicate parameter ${p.keyword}`);
    seen.add(p.keyword);

    switch (p.keyword) {
      case "SIZE": {
        const v = needValue(p);
        if (typeof v !== "string") return v;
        if (!/^[0-9]{1,20}$/.test(v)) return syntax("SIZE must be a number of octets");
        const n = Number(v);
        if (!Number.isSafeInteger(n)) {
          return { ok: false, code: 552, status: "5.3.4", text: "message size exceeds fixed maximum message size" };
        }
        params.size = n;
        break;
      }
      case "BODY": {
        const v = needValue(p);
        if (typeof v !== "string") return v;
        const u = v.toUpperCase();
        if (u === "7BIT" || u === "8BITMIME") params.body = u;
        else if (u === "BINARYMIME") return unsupported("unsupported parameter value BODY=BINARYMIME");
        else return syntax("BODY must be 7BIT or 8BITMIME");
        break;
      }
      case "SMTPUTF8": {
        const e = noValue(p);
        if (e) return e;
        params.smtputf8 = true;
        break;
      }
      case "REQUIRETLS": {
        const e = noValue(p);
        if (e) return e;
        params.requireTls = true;
        break;
      }
      case "RET": {
        const v = needValue(p);
        if (typeof v !== "string") return v;
        const u = v.toUpperCase();
        if (u !== "FULL" && u !== "HDRS") return syntax("RET must be FULL or HDRS");
        params.ret = u;
        break;
      }
      case "ENVID": {
        const v = needValue(p);
        if (typeof v !== "string") return v;
        if (v.length > MAX_ENVID) return syntax(`ENVID longer than ${MAX_ENVID} characters`);
        const d = decodeXtext(v);
        if (d === null || d === "" || !/^[\x20-\x7e]+$/.test(d)) return syntax("malformed ENVID");
        params.envid = d;
        break;
      }
      case "AUTH": {
        const v = needValue(p);
        if (typeof v !== "string") return v;
        const d = decodeXtext(v);
        if (d === null || d === "" || CONTROL.test(d)) return syntax("malformed AUTH parameter");
        params.auth = d;
        break;
      }
    }
  }
  return { ok: true, params };
}

const NOTIFY_VALUES = ["SUCCESS", "FAILURE", "DELAY"] as const;

export function parseRcptParameters(
  rest: string,
  enabled: { dsn: boolean },
): { ok: true; params: RcptParameters } | ParamError {
  const split = splitParams(rest);
  if (!split.ok) return split;
  const params: Building<RcptParameters> = {};
  const seen = new Set<string>();
  for (const p of split.params) {
    const on = (p.keyword === "NOTIFY" || p.keyword === "ORCPT") && enabled.dsn;
    if (!on) return unsupported(`unsupported parameter ${p.keyword}`);
    if (seen.has(p.keyword)) return syntax(`duplicate parameter ${p.keyword}`);
    seen.add(p.keyword);

    if (p.keyword === "NOTIFY") {
      const v = needValue(p);
      if (typeof v !== "string") return v;
      const items = v.toUpperCase().split(",");
      if (items.length === 1 && items[0] === "NEVER") {
        params.notify = ["NEVER"];
        continue;
      }
      const out: ("SUCCESS" | "FAILURE" | "DELAY")[] = [];
      for (const item of items) {
        if (item === "NEVER") return syntax("NOTIFY=NEVER cannot be combined with other values");
        const known = NOTIFY_VALUES.find((n) => n === item);
        if (!known) return syntax("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY");
        if (!out.includes(known)) out.push(known); // tolerate repeats
      }
      params.notify = out;
    } else {
      const v = needValue(p);
      if (typeof v !== "string") return v;
      if (v.length > MAX_ORCPT) return syntax(`ORCPT longer than ${MAX_ORCPT} characters`);
      const semi = v.indexOf(";");
      if (semi < 0) return syntax("ORCPT must be addr-type;address");
      const type = v.slice(0, semi).toLowerCase();
      const addr = v.slice(semi + 1);
      let decoded: string | null;
      if (type === "rfc822") decoded = decodeXtext(addr);
      else if (type === "utf-8") decoded = decodeUtf8AddrXtext(addr);
      else return syntax("ORCPT address type must be rfc822 or utf-8");
      if (decoded === null || decoded === "" || CONTROL.test(decoded)) return syntax("malformed ORCPT address");
      params.orcpt = `${type};${decoded}`;
    }
  }
  return { ok: true, params };
}
