/**
 * The one schema of petrel.yaml. Keys are camelCase; unknown keys are errors.
 * Every key has a default (see defaults.ts), so an empty file is a complete,
 * runnable configuration. The JSDoc on each key is the configuration
 * reference.
 *
 * Values that need a person's units use:
 *   - sizes:     a number of bytes, or "25MiB", "10MB", "512KiB" (units.ts)
 *   - durations: a number of SECONDS, or "500ms", "30s", "5m", "1h", "5d";
 *                parsed to MILLISECONDS
 *
 * Relative paths (dataDir, certificate and key files) are resolved against
 * the directory of the configuration file by load.ts, not here: the schema is
 * pure.
 *
 * Longer than a file should be, on purpose: it is the configuration
 * reference, read top to bottom like petrel.example.yaml, and every key's
 * meaning, default and check stand together here rather than scattered.
 */
import { isIP } from "node:net";
import * as z from "zod";
import { DEFAULTS, MAX_MTA_STS_AGE, MAX_WORKERS, MIN_COMMAND_LINE } from "./defaults.ts";
import { normalizeDomain, normalizeMailbox } from "../mail/address.ts";
import { LISTENER_ROLES } from "../mail/envelope.ts";
import { cipherStringProblem } from "./cipher-policy.ts";
import { DURATION_ALLOWED, formatSize, parseDuration, parseSize, SIZE_ALLOWED } from "./units.ts";
import { EXTENSIONS, type Extension } from "../smtp/extensions.ts";
import { isSelector } from "../mailauth/selector.ts";
import { SERVICE_ADDRESS_ALLOWED, parseServiceAddress, type ServiceAddress } from "../mail/service-address.ts";
import { isNetwork } from "../mail/networks.ts";
import { parseSite, siteSpec, SITE_ALLOWED, type DnsblSiteSpec } from "./dnsbl-sites.ts";

// ---------------------------------------------------------------------------
// Building blocks. Custom checks put the "what is allowed" text in the issue
// message; load.ts prefixes it with the key path and the value found.

function size(def: number, min = 0, belowMin?: string) {
  return z
    .unknown()
    .transform((v, ctx): number => {
      const n = parseSize(v);
      if (n === undefined) {
        ctx.addIssue({ code: "custom", message: SIZE_ALLOWED, input: v });
        return z.NEVER;
      }
      if (n < min) {
        const message = belowMin ?? `expected at least ${min} bytes${formatSize(min).endsWith("iB") ? ` (${formatSize(min)})` : ""}`;
        ctx.addIssue({ code: "custom", message, input: v });
        return z.NEVER;
      }
      return n;
    })
    .default(def);
}

function duration(def: number) {
  return z
    .unknown()
    .transform((v, ctx): number => {
      const n = parseDuration(v);
      if (n === undefined) {
        ctx.addIssue({ code: "custom", message: DURATION_ALLOWED, input: v });
        return z.NEVER;
      }
      return n;
    })
    .default(def);
}

function count(def: number, min = 0) {
  return z.number().int().min(min).default(def);
}

const domainName = z.string().transform((v, ctx): string => {
  const d = normalizeDomain(v);
  if (d === undefined) {
    ctx.addIssue({ code: "custom", message: 'expected a domain name such as "example.com"', input: v });
    return z.NEVER;
  }
  return d;
});

/** A server name for SNI: a domain, or "*.example.com" (the wildcard stands for exactly one label). */
const sniName = z.string().transform((v, ctx): string => {
  const wild = v.startsWith("*.");
  const d = normalizeDomain(wild ? v.slice(2) : v);
  if (d === undefined) {
    ctx.addIssue({ code: "custom", message: 'expected a server name such as "mail.example.com" or "*.example.com"', input: v });
    return z.NEVER;
  }
  return wild ? `*.${d}` : d;
});

const ipAddress = z.string().refine((v) => isIP(v) !== 0, {
  message: 'expected an IP address such as "127.0.0.1", "0.0.0.0", "::1" or "::"',
});

const cidr = z.string().refine(isNetwork, {
  message: 'expected an IP address or CIDR range such as "10.0.0.1", "10.0.0.0/8" or "2001:db8::/32"',
});

/** A mapping keyed by domain names, the keys normalized (lower case, A-labels); a key that is none is an error at that key. */
function byDomain<T extends z.ZodType>(value: T) {
  return z.record(z.string(), value).transform((domains, ctx) => {
    const out: Record<string, z.output<T>> = {};
    for (const [name, v] of Object.entries(domains) as [string, z.output<T>][]) {
      const domain = normalizeDomain(name);
      if (domain === undefined) ctx.addIssue({ code: "custom", message: 'expected a domain name such as "example.com"', input: name, path: [name] });
      else out[domain] = v;
    }
    return out;
  });
}

/** What DMARC's p=quarantine does: deliver into the junk folder, or only mark the message. */
const quarantineAction = z.enum(["folder", "header"]);

/** A Maildir++ folder name (delivery/maildir.ts maildirFolder): no "/", "\\", control characters or empty levels, not the inbox. */
const junkFolder = z.string().refine(
  (name) => name !== "" && !/^inbox$/i.test(name) && !/[/\\\x00-\x1f\x7f]/.test(name) && !name.split(".").includes("") && Buffer.byteLength(name) <= 255,
  { message: 'expected a folder name such as "Junk" (not INBOX; no "/", "\\" or empty "." levels)' },
);

/**
 * A user or group of the system: a name looked up in the system's databases
 * (NSS: /etc/passwd, /etc/group, LDAP …) at start-up, or a numeric id.
 */
const systemId = z.unknown().transform((v, ctx): string | number => {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 2 ** 32 - 1) return v;
  if (typeof v === "string" && /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(v) && v.length <= 64) return /^\d+$/.test(v) ? Number(v) : v;
  ctx.addIssue({ code: "custom", message: 'expected a user or group name such as "petrel", or a numeric id', input: v });
  return z.NEVER;
});

const mailbox = z.string().transform((v, ctx): string => {
  const m = normalizeMailbox(v);
  if (m === undefined) {
    ctx.addIssue({ code: "custom", message: 'expected an address such as "alice@example.com"', input: v });
    return z.NEVER;
  }
  return m;
});

/** Why limits.messageSize: 0 is refused rather than read as "unlimited". */
export const MESSAGE_SIZE_ALLOWED =
  'expected at least 1 byte: Petrel has no "unlimited" (0 in Postfix\'s message_size_limit), so that one message cannot fill the disk; write a large size such as "1GiB"';

/** Message for a user password that is not a hash (the value itself is never shown). */
export const PASSWORD_ALLOWED =
  'expected a scrypt hash ("$scrypt$..."); plaintext passwords are not accepted: run `petrel hash-password` and paste its output';

const passwordHash = z.string().refine((v) => /^\$scrypt\$\S+$/.test(v), { message: PASSWORD_ALLOWED });

const B64 = "[A-Za-z0-9+/]+={0,2}";
const SCRAM = new RegExp(`^SCRAM-SHA-256\\$[1-9]\\d*:${B64}\\$${B64}:${B64}$`);
const scramCredentials = z.string().refine((v) => SCRAM.test(v), {
  message: 'expected "SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>" (run `petrel hash-password`)',
});

const TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"] as const;
const minTlsVersion = z
  .unknown()
  .transform((v, ctx): (typeof TLS_VERSIONS)[number] => {
    if (v === "TLSv1.2" || v === "TLSv1.3") return v;
    const old = v === "TLSv1" || v === "TLSv1.1" || v === "TLSv1.0" || v === "SSLv3";
    ctx.addIssue({
      code: "custom",
      message:
        'expected "TLSv1.2" or "TLSv1.3"' +
        (old ? `; ${String(v)} is deprecated (RFC 8996) and insecure, so Petrel refuses to offer it` : ""),
      input: v,
    });
    return z.NEVER;
  })
  .default(DEFAULTS.tls.minVersion);

/** An OpenSSL cipher string (TLS 1.3 suites "TLS_…" included), checked by building a context with it. */
function cipherString(def: string) {
  return z
    .string()
    .min(1)
    .superRefine((v, ctx) => {
      const problem = cipherStringProblem(v);
      if (problem) ctx.addIssue({ code: "custom", message: `expected an OpenSSL cipher string such as "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256" (OpenSSL says: ${problem})`, input: v });
    })
    .default(def);
}

const port = z.number().int().min(0).max(65535);

export const WORKERS_ALLOWED = `expected "auto" or a whole number of processes from 1 to ${MAX_WORKERS}`;
const workerCount = z.unknown().transform((v, ctx): "auto" | number => {
  if (v === "auto" || (typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= MAX_WORKERS)) return v;
  ctx.addIssue({ code: "custom", message: WORKERS_ALLOWED });
  return z.NEVER;
});

/** Where one of Petrel's HTTP or HTTPS listeners binds. */
function bindAddress(def: { address: string; port: number }) {
  return z
    .strictObject({
      /** IP literal to bind ("::" is every address, IPv4 too on a dual-stack host). */
      address: ipAddress.default(def.address),
      /** TCP port; 0 picks a free port (tests). */
      port: port.default(def.port),
    })
    .prefault({});
}

/** An MTA-STS "mx" pattern (RFC 8461 §3.2): a host name, or "*.example.com" for any one label. */
const mxPattern = sniName;

const certKeyPair = z.strictObject({
  /** Path to the certificate chain (PEM), leaf first. */
  cert: z.string().min(1),
  /** Path to the private key (PEM) matching `cert`. */
  key: z.string().min(1),
});

/** An EHLO keyword Petrel offers, in any case ("dsn" → "DSN"). */
const ehloKeyword = z.unknown().transform((v, ctx): Extension => {
  const keyword = typeof v === "string" ? EXTENSIONS.find((e) => e === v.toUpperCase()) : undefined;
  if (keyword !== undefined) return keyword;
  ctx.addIssue({ code: "custom", message: `expected one of the EHLO keywords ${EXTENSIONS.join(", ")}`, input: v });
  return z.NEVER;
});

/** A duration longer than 0 (a window or a timeout). */
function positiveDuration(def: number) {
  return duration(def).refine((v) => v > 0, { message: "expected a duration longer than 0, such as \"1m\"" });
}

/** Events from one client per window on one kind of listener (Postfix's anvil); 0 = no limit. */
function clientRates(d: { window: number; connections: number; messages: number; recipients: number }) {
  return z
    .strictObject({
      /** The sliding window the counts are over (Postfix's anvil_rate_time_unit). */
      window: positiveDuration(d.window),
      /** Connections per window (smtpd_client_connection_rate_limit): 421 4.7.0 instead of the greeting. */
      connections: count(d.connections),
      /** MAIL commands per window (smtpd_client_message_rate_limit): 450 4.7.1. */
      messages: count(d.messages),
      /** RCPT commands per window (smtpd_client_recipient_rate_limit): 450 4.7.1. */
      recipients: count(d.recipients),
    })
    .prefault({});
}

const DNSBL_SITE_KEYS = ["zone", "weight", "filter", "name"];

/** A DNS list: postscreen's "zone=filter*weight" text, or a mapping { zone, weight?, filter?, name? }. */
const dnsblSite = z.unknown().transform((v, ctx): DnsblSiteSpec => {
  const fail = (message: string) => {
    ctx.addIssue({ code: "custom", message, input: v });
    return z.NEVER;
  };
  if (typeof v === "string") {
    const r = parseSite(v);
    return r.ok ? r.value : fail(r.reason);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(SITE_ALLOWED);
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !DNSBL_SITE_KEYS.includes(k));
  if (unknown.length > 0) return fail(`unknown key ${unknown.map((k) => `'${k}'`).join(", ")}: a site has ${DNSBL_SITE_KEYS.join(", ")}`);
  if (typeof o.zone !== "string") return fail('expected zone: the DNS list\'s zone, such as "zen.spamhaus.org"');
  if (o.weight !== undefined && !Number.isInteger(o.weight)) return fail("expected weight: a whole number (negative for an allowlist)");
  if (o.filter !== undefined && typeof o.filter !== "string") return fail('expected filter: an answer pattern such as "127.0.0.[2..11]"');
  if (o.name !== undefined && (typeof o.name !== "string" || o.name === "")) return fail("expected name: the list's name as shown in replies and logs");
  const r = siteSpec({ zone: o.zone, weight: o.weight as number | undefined, filter: o.filter as string | undefined, name: o.name as string | undefined });
  return r.ok ? r.value : fail(r.reason);
});

// ---------------------------------------------------------------------------
// The schema.

export const listenerSchema = z.strictObject({
  /** IP literal to bind: "127.0.0.1", "0.0.0.0" (all IPv4), "::" (all IPv6 and usually IPv4). */
  address: ipAddress,
  /** TCP port, 0..65535; 0 picks a free port (tests). */
  port,
  /**
   * "mx": receives mail for local domains from other servers (port 25, STARTTLS offered);
   * "submission": authenticated clients (port 587, STARTTLS required before AUTH);
   * "submissions": authenticated clients over implicit TLS (port 465, RFC 8314).
   */
  role: z.enum(LISTENER_ROLES),
  /** Expect a PROXY protocol (v1/v2) header first; only from `proxyProtocol.trusted` peers. */
  proxyProtocol: z.boolean().default(false),
  /** A certificate for this listener instead of `tls.cert`/`tls.key` (SNI entries still apply). */
  tls: certKeyPair.optional(),
  /**
   * EHLO keywords this listener neither advertises nor accepts, e.g. [DSN, CHUNKING] (Postfix's
   * smtpd_discard_ehlo_keywords): their parameters get 555, their commands are not implemented.
   */
  hide: z.array(ehloKeyword).optional(),
});

const milterAddress = z.string().transform((v, ctx): ServiceAddress => {
  const a = parseServiceAddress(v);
  if (a === undefined) {
    ctx.addIssue({ code: "custom", message: SERVICE_ADDRESS_ALLOWED, input: v });
    return z.NEVER;
  }
  return a;
});

function timeout(def: number) {
  return duration(def).refine((ms) => ms > 0, { message: "expected a duration above 0, such as \"30s\"" });
}

/** One mail filter (Postfix's smtpd_milters entry with its milter_* settings). */
export const milterSchema = z.strictObject({
  /** In logs and as the check's name ("milter:rspamd"); unique. */
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'expected a short lower-case name such as "rspamd" (letters, digits, "-" and "_")'),
  /** "inet:host:port" ("inet:[::1]:8891") or "unix:/path/to/socket". */
  address: milterAddress,
  /** Time to connect (Postfix milter_connect_timeout). */
  connectTimeout: timeout(DEFAULTS.milter.connectTimeout),
  /** Time for the negotiation and each envelope step (milter_command_timeout). */
  commandTimeout: timeout(DEFAULTS.milter.commandTimeout),
  /** Time for each header, body and end-of-message step (milter_content_timeout); the filter's progress messages restart it. */
  endOfMessageTimeout: timeout(DEFAULTS.milter.endOfMessageTimeout),
  /** When the filter is down, late or broken: "tempfail" (451 4.7.1, the client retries) or "accept" (go on without it). */
  defaultAction: z.enum(["accept", "tempfail"]).default(DEFAULTS.milter.defaultAction),
  /** Only connections to listeners of these roles are filtered; all when absent. */
  listeners: z.array(z.enum(LISTENER_ROLES)).min(1).optional(),
});

export const configSchema = z.strictObject({
  /** The server's name: in the greeting, the EHLO reply and Received headers. */
  hostname: domainName.default(DEFAULTS.hostname),
  /** Where the spool, generated certificates and other state live; relative to the config file. */
  dataDir: z.string().min(1).default(DEFAULTS.dataDir),
  /**
   * The user Petrel runs as once its listeners are bound, when started as root
   * (setgroups, setgid, setuid — it cannot become root again). Started as root
   * without one, Petrel refuses to listen on anything but loopback.
   */
  user: systemId.optional(),
  /** Its group; default: the user's primary group. */
  group: systemId.optional(),
  /** Domains whose mail is delivered locally (lower-cased). */
  domains: z.array(domainName).default(() => [...DEFAULTS.domains]),
  /** Where Petrel listens. Addresses and ports must not repeat. */
  listeners: z.array(listenerSchema).default(() => DEFAULTS.listeners.map((l) => ({ ...l }))),
  tls: z
    .strictObject({
      /** Default certificate chain (PEM). With `key`; when both are absent a self-signed
       * certificate is generated in <dataDir>/tls/. Reloaded when the file changes. */
      cert: z.string().min(1).optional(),
      /** Private key (PEM) for `cert`. */
      key: z.string().min(1).optional(),
      /** Lowest TLS version offered: "TLSv1.2" or "TLSv1.3" (TLSv1 and TLSv1.1 are refused). */
      minVersion: minTlsVersion,
      /** Certificates chosen by the server name the client asks for (SNI). Exact names win over
       * wildcards; "*.example.com" matches exactly one label; otherwise the default is used. */
      sni: z
        .array(
          z.strictObject({
            names: z.array(sniName).min(1),
            cert: z.string().min(1),
            key: z.string().min(1),
          }),
        )
        .default(() => []),
      /**
       * Cipher suites offered per listener role (OpenSSL syntax; TLS 1.3 "TLS_…" suites in the
       * same string). NULL, anonymous, export, DES, 3DES, RC4 and MD5 suites are always
       * removed, whatever is written here. The HTTPS listener (MTA-STS, TLS-ALPN-01) uses
       * `submissions`.
       */
      ciphers: z
        .strictObject({
          /** Broad, for opportunistic TLS with other servers (RFC 7435). */
          mx: cipherString(DEFAULTS.tls.ciphers.mx),
          /** Mozilla "intermediate": AEAD suites with forward secrecy only. */
          submission: cipherString(DEFAULTS.tls.ciphers.submission),
          submissions: cipherString(DEFAULTS.tls.ciphers.submissions),
        })
        .prefault({}),
      /** Staple an OCSP response (RFC 6066 §8) when the certificate names an OCSP responder. */
      ocspStapling: z.boolean().default(DEFAULTS.tls.ocspStapling),
      /**
       * Obtain and renew the default certificate from an ACME CA (RFC 8555) for `hostname`,
       * `domains` below and, when `mtaSts` is set, mta-sts.<domain> of each local domain.
       * Replaces `tls.cert`/`tls.key`. Enabling it agrees to the CA's terms of service.
       */
      acme: z
        .strictObject({
          /** The CA's directory URL. */
          directory: z.url({ protocol: /^https?$/ }).default(DEFAULTS.acme.directory),
          /** Contact address given to the CA (expiry notices, account recovery). */
          email: mailbox,
          /** Names on the certificate besides `hostname`. */
          domains: z.array(domainName).default(() => []),
          /** How the CA checks that Petrel controls the names: "http-01" (port 80), "tls-alpn-01" (RFC 8737, port 443), or "both" (the CA picks). */
          challenge: z.enum(["http-01", "tls-alpn-01", "both"]).default(DEFAULTS.acme.challenge),
          /** The HTTP-01 listener: serves /.well-known/acme-challenge/ and nothing else. */
          http: bindAddress(DEFAULTS.acme.http),
          /** The TLS-ALPN-01 listener; shared with `mtaSts.listen` when both name the same address and port. */
          tlsAlpn: bindAddress(DEFAULTS.acme.tlsAlpn),
          /** A CA certificate (PEM file) to trust for the directory's HTTPS, for a private ACME CA. */
          ca: z.string().min(1).optional(),
        })
        .optional(),
    })
    .prefault({}),
  /**
   * MTA-STS policy hosting (RFC 8461 §3.2): serve https://mta-sts.<domain>/.well-known/mta-sts.txt
   * for every local domain. Absent: not served.
   */
  mtaSts: z
    .strictObject({
      /** "enforce": senders deliver only over verified TLS to the mx below; "testing": they report but deliver; "none": withdraw a policy. */
      mode: z.enum(["enforce", "testing", "none"]).default(DEFAULTS.mtaSts.mode),
      /** How long senders may cache the policy (RFC 8461: at most 31557600 seconds, a year). */
      maxAge: duration(DEFAULTS.mtaSts.maxAge).refine((ms) => ms >= 1000 && ms <= MAX_MTA_STS_AGE, {
        message: "expected between 1 second and 31557600 seconds (RFC 8461 §3.2)",
      }),
      /** MX host patterns senders may deliver to ("*.example.com" matches one label); empty: the hostname. */
      mx: z.array(mxPattern).default(() => []),
      /** The HTTPS listener serving the policy (port 443 for senders to find it). */
      listen: bindAddress(DEFAULTS.mtaSts.listen),
    })
    .optional(),
  proxyProtocol: z
    .strictObject({
      /** Peers (IPs or CIDR ranges) allowed to send a PROXY protocol header. */
      trusted: z.array(cidr).default(() => []),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /**
       * Largest message accepted (SIZE, RFC 1870). Default 25MiB. There is no "unlimited":
       * 0 (Postfix's message_size_limit = 0) is refused, as every limit in Petrel exists.
       */
      messageSize: size(DEFAULTS.limits.messageSize, 1, MESSAGE_SIZE_ALLOWED),
      /** Largest header section of a message. Default 1MiB. */
      headerSize: size(DEFAULTS.limits.headerSize),
      /** Recipients per message. */
      recipients: count(DEFAULTS.limits.recipients, 1),
      /** Messages per connection before the server closes it. */
      messagesPerConnection: count(DEFAULTS.limits.messagesPerConnection, 1),
      /** Longest command line in bytes, CRLF included (at least 512, RFC 5321 §4.5.3.1.4). */
      commandLine: size(DEFAULTS.limits.commandLine, MIN_COMMAND_LINE),
      /** Errors after which each reply is delayed. */
      softErrors: count(DEFAULTS.limits.softErrors),
      /** Errors after which the connection is closed. */
      hardErrors: count(DEFAULTS.limits.hardErrors, 1),
      /** Time to wait for the next command (RFC 5321 §4.5.3.2.7: at least 5m). */
      commandTimeout: duration(DEFAULTS.limits.commandTimeout),
      /** Time to wait for the next chunk of message data. */
      dataTimeout: duration(DEFAULTS.limits.dataTimeout),
      /** Longest whole connection. */
      sessionTimeout: duration(DEFAULTS.limits.sessionTimeout),
      /** Simultaneous connections, all listeners together. */
      connections: count(DEFAULTS.limits.connections, 1),
      /** Simultaneous connections from one client IP. */
      connectionsPerClient: count(DEFAULTS.limits.connectionsPerClient, 1),
      /** Failed AUTH attempts before the connection is closed. */
      authFailuresPerConnection: count(DEFAULTS.limits.authFailuresPerConnection, 1),
      /** Failed AUTH attempts from one client IP within `authBanTime` before it is refused. */
      authFailuresPerClient: count(DEFAULTS.limits.authFailuresPerClient, 1),
      /** How long a client IP stays refused after too many failed AUTH attempts. */
      authBanTime: duration(DEFAULTS.limits.authBanTime),
      /** On shutdown, time given to sessions in progress before they are cut. */
      shutdownGrace: duration(DEFAULTS.limits.shutdownGrace),
      /** Rates per client and per authenticated user (README, "Rate limits"); every 0 is no limit. */
      rates: z
        .strictObject({
          /** Clients the per-client rates do not count (Postfix's smtpd_client_event_limit_exceptions). */
          exempt: z.array(cidr).default(() => [...DEFAULTS.limits.rates.exempt]),
          /** An IPv6 client is counted by this prefix: a host usually has a whole /64. */
          ipv6Prefix: z.number().int().min(32).max(128).default(DEFAULTS.limits.rates.ipv6Prefix),
          /** Most clients and users remembered at once (about 200 bytes each); the least recently seen go first. */
          trackedKeys: count(DEFAULTS.limits.rates.trackedKeys, 1000),
          /** Per client on mx listeners. */
          mx: clientRates(DEFAULTS.limits.rates.mx),
          /** Per client on submission and submissions listeners, counted together. */
          submission: clientRates(DEFAULTS.limits.rates.submission),
          /** Per authenticated user, whatever the client address (exempt does not apply) and listener. */
          user: z
            .strictObject({
              window: positiveDuration(DEFAULTS.limits.rates.user.window),
              /** MAIL commands per window: 450 4.7.1. */
              messages: count(DEFAULTS.limits.rates.user.messages),
              /** RCPT commands per window: 450 4.7.1. */
              recipients: count(DEFAULTS.limits.rates.user.recipients),
              /** Logins not counted (a trusted application's account). */
              exempt: z.array(mailbox).default(() => []),
            })
            .prefault({}),
        })
        .prefault({}),
    })
    .prefault({}),
  smtp: z
    .strictObject({
      /** A bare LF in message data: "normalize" to CRLF, or "reject" the message. */
      bareNewline: z.enum(["normalize", "reject"]).default(DEFAULTS.smtp.bareNewline),
      /** Wait this long before the greeting; clients that talk first are refused. */
      greetingDelay: duration(DEFAULTS.smtp.greetingDelay),
      /** Text after the hostname in the 220 greeting. */
      banner: z.string().default(DEFAULTS.smtp.banner),
    })
    .prefault({}),
  submission: z
    .strictObject({
      /** The MAIL FROM of an authenticated client must be its login or one of its `addresses`. */
      senderMustMatchLogin: z.boolean().default(DEFAULTS.submission.senderMustMatchLogin),
    })
    .prefault({}),
  /** The checks asked at every SMTP stage (relay, sender ownership, limits, mail loops; README "Checks and policy"). */
  policy: z
    .strictObject({
      /** Longest a check may take at one stage; a check that takes longer counts as failed: 451 4.3.0 (421 at connect). */
      timeout: duration(DEFAULTS.policy.timeout),
      /** RFC 8601 authserv-id naming this server in the Authentication-Results field it adds (and removes when forged); the hostname when unset. */
      authservId: z
        .string()
        .regex(/^[^\s;()"\\]+$/, 'expected one word (a host name such as "mx.example.com"), without spaces, ";", "(", ")" or quotes')
        .optional(),
    })
    .prefault({}),
  /**
   * Mail filters (milters) consulted at every SMTP stage, in this order — rspamd, OpenDKIM,
   * ClamAV's clamav-milter … — as Postfix's smtpd_milters; see the README's "Milters".
   */
  milters: z.array(milterSchema).default(() => []),
  /**
   * DNS blocklists and allowlists asked when a client connects (postscreen's
   * dnsbl_sites and dnsbl_threshold; README, "DNS blocklists").
   */
  dnsbl: z
    .strictObject({
      /** "zone", "zone*weight", "zone=127.0.0.[2..11]*3", or { zone, weight, filter, name }; a negative weight is an allowlist. */
      sites: z.array(dnsblSite).default(() => []),
      /** A client whose weights add up to this is refused. */
      threshold: count(DEFAULTS.dnsbl.threshold, 1),
      /** Longest wait for the lists' answers; a list that has not answered counts 0 (fail open). */
      timeout: positiveDuration(DEFAULTS.dnsbl.timeout),
      /** Refuse each RCPT (as Postfix's reject_rbl_client) or the connection itself. */
      rejectAt: z.enum(["rcpt", "connect"]).default(DEFAULTS.dnsbl.rejectAt),
      /** The listeners whose clients are looked up. */
      roles: z.array(z.enum(LISTENER_ROLES)).default(() => [...DEFAULTS.dnsbl.roles]),
      /** Clients never looked up. */
      exempt: z.array(cidr).default(() => [...DEFAULTS.dnsbl.exempt]),
    })
    .prefault({}),
  /**
   * Checks of your own: modules whose default export is a CheckFactory
   * (README, "Plugins"), asked after the built-in checks, in this order.
   * TypeScript runs through Node's type stripping (erasable syntax only).
   */
  plugins: z
    .array(
      z.strictObject({
        /** The module (.js, .mjs or .ts); relative to the config file. */
        path: z.string().min(1),
        /** Given to the factory as they are. */
        options: z.unknown().optional(),
      }),
    )
    .default(() => []),
  /** Local users. Passwords are stored only as hashes made by `petrel hash-password`. */
  users: z
    .array(
      z.strictObject({
        /** Login and mailbox, local@domain. */
        address: mailbox,
        /** scrypt hash: "$scrypt$...". */
        password: passwordHash,
        /** Optional SCRAM-SHA-256 credentials: "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". */
        scram: scramCredentials.optional(),
        /** Other sender addresses this user may use. */
        addresses: z.array(mailbox).optional(),
        /** May log in to the admin API (POST /api/login). */
        admin: z.boolean().optional(),
      }),
    )
    .default(() => []),
  /**
   * Who reads postmaster@ and abuse@ mail (RFC 5321 §4.5.1, RFC 2142) of every local domain: a
   * local user or any other address, used where no user or alias of that name exists in the
   * domain (like the "postmaster: root" entry of Postfix's aliases). Unset: postmaster@ lands in
   * the Maildir <dataDir>/mail/<domain>/postmaster/ that no user can log into, abuse@ is unknown,
   * and start-up logs a warning.
   */
  postmaster: mailbox.optional(),
  /** What `petrel user add|passwd` and `petrel hash-password` accept as a password. */
  passwords: z
    .strictObject({
      /** Fewest characters (NIST SP 800-63B asks for at least 8; 12 by default). */
      minLength: count(DEFAULTS.passwords.minLength, 8),
    })
    .prefault({}),
  /** The queue manager: retries, lifetime, concurrency (Postfix qmgr's knobs). */
  queue: z
    .strictObject({
      /** First retry after a temporary failure (Postfix minimal_backoff_time). */
      minBackoff: duration(DEFAULTS.queue.minBackoff),
      /** Longest wait between retries (Postfix maximal_backoff_time). */
      maxBackoff: duration(DEFAULTS.queue.maxBackoff),
      /** Bounce a message still undelivered after this long (Postfix maximal_queue_lifetime). */
      lifetime: duration(DEFAULTS.queue.lifetime),
      /** The same for bounces (null sender), after which they are dropped. */
      bounceLifetime: duration(DEFAULTS.queue.bounceLifetime),
      /** Tell the sender a message is delayed after this long; 0 = never (Postfix delay_warning_time). */
      delayWarning: duration(DEFAULTS.queue.delayWarning),
      /** Deliveries at once, all destinations. */
      concurrency: count(DEFAULTS.queue.concurrency, 1),
      /** Deliveries at once to one destination. */
      perDestination: count(DEFAULTS.queue.perDestination, 1),
      /** Recipients per delivery attempt. */
      recipientsPerDelivery: count(DEFAULTS.queue.recipientsPerDelivery, 1),
      /** Messages held in memory at once; the rest wait on disk (Postfix qmgr_message_active_limit). */
      activeLimit: count(DEFAULTS.queue.activeLimit, 1),
      /** Longest pause before MAIL is answered while delivery falls behind acceptance; 0 = never (Postfix in_flow_delay). */
      inflowDelay: duration(DEFAULTS.queue.inflowDelay),
    })
    .prefault({}),
  /** Local delivery: Maildir under <dataDir>/mail/<domain>/<user>/, or LMTP per domain. */
  delivery: z
    .strictObject({
      /** Characters that start a sub-address: "+" makes user+tag@domain deliver to user@domain. "" disables. */
      subaddressSeparator: z.string().max(8).default(DEFAULTS.delivery.subaddressSeparator),
      /** Default Maildir quota per user; 0 = unlimited. */
      quota: size(DEFAULTS.delivery.quota),
      /** A full mailbox: "defer" (retry, 4.2.2) or "bounce" (5.2.2). */
      quotaFull: z.enum(["defer", "bounce"]).default(DEFAULTS.delivery.quotaFull),
      /**
       * A message whose header section carries this many Received: fields, this server's own
       * included, is a mail loop (Postfix hopcount_limit, 50): refused at the end of DATA/BDAT with
       * 554 5.4.6, never forwarded, and bounced (5.4.6) if it reaches local delivery anyway.
       */
      maxReceived: count(DEFAULTS.delivery.maxReceived, 2),
      /**
       * Owner of the Maildir files and directories Petrel creates, e.g. Dovecot's
       * mail user. With a group, files are 0660 and directories 2770 (shared with
       * the group); otherwise 0600 and 0700. Default: whoever Petrel runs as.
       */
      owner: z
        .strictObject({ user: systemId.optional(), group: systemId.optional() })
        .refine((o) => o.user !== undefined || o.group !== undefined, { message: "expected user, group or both" })
        .optional(),
    })
    .prefault({}),
  /**
   * Processes that accept SMTP sessions: "auto" (one per CPU, at most
   * MAX_AUTO_WORKERS) or a number; 1 serves everything in one process.
   * The spool and the queue manager stay one, in the primary (src/workers/).
   */
  workers: workerCount.default(DEFAULTS.workers),
  /** How accepted messages are stored in <dataDir>/spool. */
  spool: z
    .strictObject({
      /** "journal" (default): group commit into shared segment files, one fdatasync for many messages; "files": a file per message. */
      format: z.enum(["files", "journal"]).default(DEFAULTS.spool.format),
    })
    .prefault({}),
  /**
   * Where the spool, the queue state and the accounts live: "filesystem" (the embedded default,
   * under dataDir) or "postgres" — one PostgreSQL shared by every node of a cluster (README,
   * "Several nodes on PostgreSQL").
   */
  storage: z
    .discriminatedUnion("kind", [
      z.strictObject({ kind: z.literal("filesystem") }),
      z.strictObject({
        kind: z.literal("postgres"),
        /** postgres://user[:password]@host[:port]/database; the password may be left to `passwordFile`. */
        url: z.string().refine((u) => /^postgres(ql)?:\/\//.test(u) && URL.canParse(u), { message: "expected a URL such as postgres://petrel@db.example.com:5432/petrel" }),
        /** A file (mode 0600) whose first line is the database password, kept out of this file. */
        passwordFile: z.string().min(1).optional(),
        /** Connections this node holds at most. */
        poolSize: count(DEFAULTS.storage.poolSize, 2),
        /** This node's name in the cluster (which node holds which delivery); default: the host's name and the port-25 listener. */
        node: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/, { message: "expected a node name of letters, digits, '.', '_', ':' and '-'" }).optional(),
        /** Apply the schema's migrations at start (otherwise `petrel db migrate` does, and start-up refuses an old schema). */
        migrate: z.boolean().default(true),
        /**
         * How long a node's claim on a message (its lease) lasts unrenewed: a node that dies holds
         * its messages this long before another node takes them. Renewed every third of it.
         */
        leaseTime: positiveDuration(DEFAULTS.storage.leaseTime),
        /** How often one node of the cluster looks through the spool for messages the queue does not know (a node died between accepting and queueing). */
        reconcileInterval: positiveDuration(DEFAULTS.storage.reconcileInterval),
      }),
    ])
    .default({ kind: "filesystem" }),
  /**
   * DKIM keys per domain: the selectors whose keys (<dataDir>/dkim/<domain>/<selector>.key,
   * made by `petrel dkim keygen`) sign the domain's mail — an RSA and an Ed25519 selector sign
   * side by side. Rotation: a new selector is added here once its record is published.
   */
  dkim: z
    .strictObject({
      domains: byDomain(
        z.strictObject({
          selectors: z
            .array(z.string().refine(isSelector, { message: 'expected a DKIM selector: letters, digits and hyphens, such as "202612-rsa"' }))
            .min(1),
        }),
      ).default(() => ({ ...DEFAULTS.dkim.domains })),
    })
    .prefault({}),
  /**
   * Message authentication of mail received on mx listeners — SPF, DKIM, ARC, DMARC, one
   * Authentication-Results field — and what is enforced (README, "Message authentication").
   * Signing what Petrel sends is `dkim.domains`.
   */
  authentication: z
    .strictObject({
      /** Check SPF, DKIM, ARC and DMARC of mail on mx listeners (off: none of it, nothing enforced). */
      verify: z.boolean().default(DEFAULTS.authentication.verify),
      /** Clients whose mail is not checked at all: programs on this host (OpenDMARC's IgnoreHosts). */
      ignoreClients: z.array(cidr).default(() => [...DEFAULTS.authentication.ignoreClients]),
      /**
       * Clients checked and recorded but never refused or quarantined for SPF or DMARC: forwarders
       * and your own other servers whose mail fails through no fault of theirs.
       */
      exceptions: z.array(cidr).default(() => [...DEFAULTS.authentication.exceptions]),
      spf: z
        .strictObject({
          /** Refuse an SPF fail (the domain's "-all") at MAIL FROM: 550 5.7.23. Off: DMARC decides. */
          rejectFail: z.boolean().default(DEFAULTS.authentication.spf.rejectFail),
        })
        .prefault({}),
      dkim: z
        .strictObject({
          /** DKIM-Signature fields verified per message; later ones are counted, not checked. */
          maxSignatures: count(DEFAULTS.authentication.dkim.maxSignatures, 1),
        })
        .prefault({}),
      dmarc: z
        .strictObject({
          /** Do what a failing message's domain asks: p=reject → 550 5.7.1, p=quarantine → `quarantine`. */
          enforce: z.boolean().default(DEFAULTS.authentication.dmarc.enforce),
          /** p=quarantine: "folder" delivers into `junkFolder`, "header" adds X-Spam-Flag: YES. */
          quarantine: quarantineAction.default(DEFAULTS.authentication.dmarc.quarantine),
          /** The Maildir++ folder quarantined mail goes to (Dovecot shows "Junk"). */
          junkFolder: junkFolder.default(DEFAULTS.authentication.dmarc.junkFolder),
          /**
           * Unauthenticated mail whose From is in a local domain (or below one) and that passes
           * neither SPF nor DKIM for it: "reject" refuses it (550 5.7.1) whatever the domain's DMARC
           * record says, or without one; "policy" leaves it to the record.
           */
          localDomains: z.enum(["reject", "policy"]).default(DEFAULTS.authentication.dmarc.localDomains),
        })
        .prefault({}),
      arc: z
        .strictObject({
          /**
           * Forwarders (ARC sealing domains) whose word is taken: a message that fails DMARC is not
           * refused or quarantined when its ARC chain passes, the newest set is theirs, and it
           * recorded dmarc=pass (RFC 8617 §7.2).
           */
          trustedSealers: z.array(domainName).default(() => [...DEFAULTS.authentication.arc.trustedSealers]),
          /** Seal mail received on mx and forwarded by an alias with the alias domain's RSA key (dkim.domains). */
          seal: z.boolean().default(DEFAULTS.authentication.arc.seal),
        })
        .prefault({}),
      /** Per local domain of the recipients: DMARC enforcement other than the global one. */
      domains: byDomain(
        z.strictObject({
          dmarc: z.strictObject({ enforce: z.boolean().optional(), quarantine: quarantineAction.optional() }).prefault({}),
        }),
      ).default(() => ({})),
    })
    .prefault({}),
  /** DNS for outbound delivery (MX, A/AAAA, TXT, TLSA). */
  dns: z
    .strictObject({
      /** Resolvers as "address" or "address:port" ("[v6]:port"); empty = the system's (/etc/resolv.conf). */
      servers: z.array(z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[0-9a-fA-F:]+)(:\d{1,5})?$/, "expected an IP address, optionally with :port")).default(() => []),
      /**
       * The resolvers validate DNSSEC and the path to them cannot be tampered with (a resolver on
       * loopback): Petrel sends the DO bit and believes their AD bit, which DANE needs. As
       * Postfix's smtp_dns_support_level = dnssec. Never for a resolver across a network.
       */
      dnssec: z.boolean().default(DEFAULTS.dns.dnssec),
    })
    .prefault({}),
  /** Outbound SMTP to other servers (the remote agent). */
  outbound: z
    .strictObject({
      /** Name in EHLO; default: hostname. */
      heloName: domainName.optional(),
      /** Port of the MX hosts; 25 on the internet (tests and special setups change it). */
      port: z.number().int().min(1).max(65535).default(DEFAULTS.outbound.port),
      /** Source IPv4 / IPv6 address for outbound connections. */
      sourceAddress: ipAddress.optional(),
      sourceAddress6: ipAddress.optional(),
      /** TLS toward MX hosts: "opportunistic" (STARTTLS when offered, unverified), "required" (verified STARTTLS or defer), "none". */
      tls: z.enum(["opportunistic", "required", "none"]).default(DEFAULTS.outbound.tls),
      /** Keep an idle connection (SMTP, and LMTP to a transport entry) for reuse by the next message to the same host this long. */
      connectionReuse: duration(DEFAULTS.outbound.connectionReuse),
      /** Honour the MTA-STS policies of recipient domains (RFC 8461): enforce delivers only over verified TLS to the MX hosts they name. */
      mtaSts: z.boolean().default(DEFAULTS.outbound.mtaSts),
      /** DANE (RFC 7672): authenticate MX hosts by their DNSSEC-validated TLSA records. Takes effect only with dns.dnssec. */
      dane: z.boolean().default(DEFAULTS.outbound.dane),
    })
    .prefault({}),
  /** TLS reporting (RFC 8460) about Petrel's outbound TLS sessions. */
  tlsRpt: z
    .strictObject({
      /** Once a day, send each domain that publishes a _smtp._tls record the report of yesterday's sessions to it. */
      send: z.boolean().default(DEFAULTS.tlsRpt.send),
      /** The report's organization-name; default: hostname. */
      organization: z.string().min(1).max(200).optional(),
      /** The reporting domain (TLS-Report-Submitter); default: hostname. */
      submitter: domainName.optional(),
      /** The report's contact-info, an address or URI; default: the from address. */
      contact: z.string().min(1).max(200).optional(),
      /** From: of report mail (sent from the null reverse-path); default: postmaster@<hostname>. */
      from: mailbox.optional(),
    })
    .prefault({}),
  /**
   * Routes by recipient domain (Postfix's transport map and relayhost): "*" is
   * the default route for all non-local mail (a smarthost). type "smtp" with a
   * host relays there (e.g. a provider on 587 with AUTH); "smtp" without a host
   * uses MX with this entry's TLS policy; "lmtp" hands local mail to an LMTP
   * server such as Dovecot (host "/path" is a UNIX socket); "local" is Maildir.
   */
  transport: z
    .array(
      z.strictObject({
        domains: z.array(z.union([z.literal("*"), domainName])).min(1),
        type: z.enum(["smtp", "lmtp", "local"]),
        host: z.string().min(1).optional(),
        port: z.number().int().min(1).max(65535).optional(),
        /** smtp: "required" (verified STARTTLS), "opportunistic", "implicit" (port 465), "none". */
        tls: z.enum(["required", "opportunistic", "implicit", "none"]).optional(),
        /** AUTH toward a relay; the password is read from a file, never written in the config. */
        auth: z.strictObject({ user: z.string().min(1), passwordFile: z.string().min(1) }).optional(),
      }).refine((t) => t.type === "local" ? t.host === undefined : t.type === "smtp" || t.host !== undefined, {
        message: 'expected "host" for type lmtp, and no "host" for type local',
      }),
    )
    .default(() => []),
  /**
   * The admin HTTP API (README, "Admin API"): the queue, accounts, local mailboxes, the
   * message trace and live events, as JSON, described at /api/openapi.json.
   */
  admin: z
    .strictObject({
      /** Serve it (false: only the control socket and the CLI operate the server). */
      enabled: z.boolean().default(DEFAULTS.admin.enabled),
      /** Where it listens. Loopback: plain HTTP; any other address: HTTPS with the server's certificates. */
      listen: bindAddress(DEFAULTS.admin.listen),
      /**
       * "token": every request carries `Authorization: Bearer <token>` — the token in `tokenFile`, or
       * one an administrator account got from POST /api/login; "none": no authentication, only on a
       * loopback address.
       */
      auth: z.enum(["token", "none"]).default(DEFAULTS.admin.auth),
      /** The API token, generated on first start (0600) when missing; default <dataDir>/admin.token. */
      tokenFile: z.string().min(1).optional(),
      /** How long a login (POST /api/login) stays valid. */
      sessionLifetime: positiveDuration(DEFAULTS.admin.sessionLifetime),
      /** How long the message trace (every event of every message) is kept, in <dataDir>/trace/. */
      traceRetention: positiveDuration(DEFAULTS.admin.traceRetention),
      /** The trace on disk stays below this size; the oldest hours go first. */
      traceMaxSize: size(DEFAULTS.admin.traceMaxSize, 1024 * 1024),
    })
    .prefault({}),
  /** Prometheus metrics at /metrics (README, "Metrics"). */
  metrics: z
    .strictObject({
      enabled: z.boolean().default(DEFAULTS.metrics.enabled),
      /** A listener of their own; absent: /metrics on the admin listener. */
      listen: z.strictObject({ address: ipAddress, port }).optional(),
      /** "token": the admin token as a bearer token (Prometheus: authorization.credentials_file); "none": only on a loopback address. */
      auth: z.enum(["token", "none"]).default(DEFAULTS.metrics.auth),
    })
    .prefault({}),
  log: z
    .strictObject({
      /** fatal, error, warn, info, debug, trace or silent. */
      level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default(DEFAULTS.log.level),
      /** json: one JSON object per line; pretty: one readable line per event; auto: pretty when stdout is a terminal. */
      format: z.enum(["auto", "json", "pretty"]).default(DEFAULTS.log.format),
    })
    .prefault({}),
});

/** The parsed configuration: every default filled in, units converted (bytes, milliseconds). */
export type Config = z.output<typeof configSchema>;
export type ListenerConfig = Config["listeners"][number];
export type UserConfig = Config["users"][number];
export type SniConfig = Config["tls"]["sni"][number];
export type TlsMinVersion = Config["tls"]["minVersion"];
export type MilterConfig = Config["milters"][number];
export type StorageConfig = Config["storage"];
export type PostgresStorageConfig = Extract<StorageConfig, { kind: "postgres" }>;

// ---------------------------------------------------------------------------
// Checks across keys, run after the schema accepted each value.

export interface CrossIssue {
  path: (string | number)[];
  value: unknown;
  allowed: string;
}

/** 127.0.0.0/8, ::1 and ::ffff:127.x: only this machine can connect. */
export function isLoopback(address: string): boolean {
  return address === "::1" || /^(::ffff:)?127\./.test(address);
}

function wildcardOverlap(a: string, b: string): boolean {
  if (a === b) return true;
  const wild = (x: string) => x === "0.0.0.0" || x === "::";
  if (a === "::" || b === "::") return true; // dual-stack "::" takes the port on every address
  return (wild(a) && isIP(b) === 4) || (wild(b) && isIP(a) === 4);
}

/** Keywords a submission listener cannot do without, and why. */
const SUBMISSION_NEEDS: Partial<Record<Extension, string>> = {
  AUTH: "a submission listener cannot hide AUTH: its clients must authenticate (RFC 6409 §4.3)",
  STARTTLS: "a submission listener cannot hide STARTTLS: AUTH is offered only over TLS",
};

export function crossCheck(config: Config): CrossIssue[] {
  const issues: CrossIssue[] = [];
  const { listeners } = config;
  for (let i = 0; i < listeners.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = listeners[j];
      const b = listeners[i];
      if (a.port !== 0 && a.port === b.port && wildcardOverlap(a.address, b.address)) {
        issues.push({
          path: ["listeners", i],
          value: `${b.address}:${b.port}`,
          allowed: `expected a distinct address and port: listeners[${j}] already uses ${a.address}:${a.port}`,
        });
        break;
      }
    }
    const hidden = listeners[i].hide ?? [];
    for (const [k, keyword] of hidden.entries()) {
      const needed = listeners[i].role === "mx" ? undefined : SUBMISSION_NEEDS[keyword];
      if (needed && (keyword !== "STARTTLS" || listeners[i].role === "submission")) {
        issues.push({ path: ["listeners", i, "hide", k], value: keyword, allowed: needed });
      }
    }
    if (listeners[i].proxyProtocol && config.proxyProtocol.trusted.length === 0) {
      issues.push({
        path: ["listeners", i, "proxyProtocol"],
        value: true,
        allowed: "proxyProtocol.trusted is empty, so no peer may send a PROXY header: list the proxy's address there",
      });
    }
  }
  if (config.tls.acme && (config.tls.cert !== undefined || config.tls.key !== undefined)) {
    issues.push({
      path: ["tls", "acme"],
      value: "(set)",
      allowed: "expected either tls.acme (certificates obtained automatically) or tls.cert/tls.key, not both",
    });
  }
  if ((config.tls.cert === undefined) !== (config.tls.key === undefined)) {
    const missing = config.tls.cert === undefined ? "cert" : "key";
    issues.push({
      path: ["tls", missing],
      value: undefined,
      allowed: "expected tls.cert and tls.key together (or neither, for a generated self-signed certificate)",
    });
  }
  const sniSeen = new Map<string, number>();
  config.tls.sni.forEach((entry, i) => {
    entry.names.forEach((name, k) => {
      const prev = sniSeen.get(name);
      if (prev !== undefined && prev !== i) {
        issues.push({ path: ["tls", "sni", i, "names", k], value: name, allowed: `expected each name once: tls.sni[${prev}] already has it` });
      } else sniSeen.set(name, i);
    });
  });
  if (config.group !== undefined && config.user === undefined) {
    issues.push({ path: ["group"], value: config.group, allowed: "expected user as well: group only applies to the user Petrel switches to" });
  }
  const milterSeen = new Map<string, number>();
  config.milters.forEach((m, i) => {
    const prev = milterSeen.get(m.name);
    if (prev !== undefined) {
      issues.push({ path: ["milters", i, "name"], value: m.name, allowed: `expected each name once: milters[${prev}] has the same name` });
    } else milterSeen.set(m.name, i);
  });
  const userSeen = new Map<string, number>();
  config.users.forEach((u, i) => {
    const prev = userSeen.get(u.address);
    if (prev !== undefined) {
      issues.push({ path: ["users", i, "address"], value: u.address, allowed: `expected each user once: users[${prev}] has the same address` });
    } else userSeen.set(u.address, i);
  });
  const admin = config.admin;
  if (admin.enabled && admin.auth === "none" && !isLoopback(admin.listen.address)) {
    issues.push({
      path: ["admin", "auth"], value: "none",
      allowed: `expected "token" when admin.listen.address is not a loopback address (${admin.listen.address}): anyone who reaches it could change accounts and the queue`,
    });
  }
  const metricsAt = config.metrics.listen ?? (admin.enabled ? admin.listen : undefined);
  if (config.metrics.enabled && config.metrics.auth === "none" && metricsAt && !isLoopback(metricsAt.address)) {
    issues.push({
      path: ["metrics", "auth"], value: "none",
      allowed: `expected "token" when metrics are served on a non-loopback address (${metricsAt.address}); or serve them on loopback with metrics.listen`,
    });
  }
  if (config.dnsbl.sites.length > 0 && config.dnsbl.timeout >= config.policy.timeout) {
    issues.push({
      path: ["dnsbl", "timeout"], value: config.dnsbl.timeout / 1000 + "s",
      allowed: `expected less than policy.timeout (${config.policy.timeout / 1000}s): a check still waiting then is failed (421/451), so a list that is down would refuse every client instead of none`,
    });
  }
  return issues;
}

