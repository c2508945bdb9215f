/**
 * Every default value of the configuration, in one place. The schema
 * (schema.ts) takes its defaults from here, the embedded default
 * configuration is simply an empty file, and petrel.example.yaml and the
 * README's configuration reference are written from this table (a test checks
 * that petrel.example.yaml parses to exactly these values).
 *
 * Units are those of the parsed configuration: sizes in bytes, durations in
 * milliseconds.
 */

/** The `source` name used in errors for the built-in configuration. */
export const EMBEDDED_SOURCE = "<embedded default>";

/** The embedded default configuration file: empty, so every key takes its default. */
export const EMBEDDED_DEFAULT_YAML = "# Petrel's embedded default: every key takes its default value.\n{}\n";

const TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/** Mozilla "intermediate" (v5.7) without its DHE suites: AEAD with forward secrecy only. */
export const INTERMEDIATE_CIPHERS =
  `${TLS13_SUITES}:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:` +
  "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/** Broad, for opportunistic TLS between MTAs (RFC 7435). */
export const OPPORTUNISTIC_CIPHERS = `${TLS13_SUITES}:HIGH:!aNULL:!eNULL:!EXPORT:!DES:!3DES:!RC4:!MD5:!PSK:!SRP:!IDEA:!SEED`;

/** The most SMTP worker processes a configuration may ask for. */
export const MAX_WORKERS = 256;
/**
 * "auto" asks for one worker per CPU up to this: every worker hands its
 * messages to the one primary (spool writes, queue manager, deliveries), so
 * past a point more acceptors only queue behind it.
 */
export const MAX_AUTO_WORKERS = 32;

const KiB = 1024;
const MiB = 1024 * KiB;
const SECOND = 1000;

export const DEFAULTS = {
  hostname: "localhost",
  dataDir: "./data",
  domains: ["localhost"],
  listeners: [
    { address: "127.0.0.1", port: 2525, role: "mx", proxyProtocol: false },
    { address: "127.0.0.1", port: 2587, role: "submission", proxyProtocol: false },
    { address: "127.0.0.1", port: 2465, role: "submissions", proxyProtocol: false },
  ],
  tls: {
    minVersion: "TLSv1.2",
    sni: [],
    ciphers: {
      mx: OPPORTUNISTIC_CIPHERS,
      submission: INTERMEDIATE_CIPHERS,
      submissions: INTERMEDIATE_CIPHERS,
    },
    ocspStapling: true,
  },
  acme: {
    directory: "https://acme-v02.api.letsencrypt.org/directory",
    challenge: "http-01",
    http: { address: "::", port: 80 },
    tlsAlpn: { address: "::", port: 443 },
  },
  mtaSts: {
    mode: "testing",
    maxAge: 7 * 24 * 3600 * SECOND,
    listen: { address: "::", port: 443 },
  },
  proxyProtocol: {
    trusted: [],
  },
  limits: {
    messageSize: 25 * MiB,
    headerSize: 1 * MiB,
    recipients: 1000,
    messagesPerConnection: 100,
    commandLine: 2048,
    softErrors: 10,
    hardErrors: 20,
    commandTimeout: 300 * SECOND,
    dataTimeout: 300 * SECOND,
    sessionTimeout: 3600 * SECOND,
    connections: 1000,
    connectionsPerClient: 50,
    authFailuresPerConnection: 3,
    authFailuresPerClient: 10,
    authBanTime: 600 * SECOND,
    shutdownGrace: 30 * SECOND,
    rates: {
      exempt: ["127.0.0.0/8", "::1"],
      ipv6Prefix: 64,
      trackedKeys: 100_000,
      mx: { window: 60 * SECOND, connections: 0, messages: 0, recipients: 0 },
      submission: { window: 60 * SECOND, connections: 0, messages: 0, recipients: 0 },
      user: { window: 3600 * SECOND, messages: 100, recipients: 1000, exempt: [] },
    },
  },
  smtp: {
    bareNewline: "normalize",
    greetingDelay: 0,
    banner: "Petrel ESMTP",
  },
  submission: {
    senderMustMatchLogin: true,
  },
  policy: {
    timeout: 60 * SECOND,
  },
  milters: [],
  /** Each entry of `milters` (Postfix's milter_connect_timeout, milter_command_timeout, milter_content_timeout, milter_default_action). */
  milter: {
    connectTimeout: 30 * SECOND,
    commandTimeout: 30 * SECOND,
    endOfMessageTimeout: 300 * SECOND,
    defaultAction: "tempfail",
  },
  dnsbl: {
    sites: [],
    threshold: 1,
    timeout: 10 * SECOND,
    rejectAt: "rcpt",
    roles: ["mx"],
    exempt: ["127.0.0.0/8", "::1"],
  },
  plugins: [],
  users: [],
  passwords: {
    minLength: 12,
  },
  queue: {
    minBackoff: 300 * SECOND,
    maxBackoff: 3600 * SECOND,
    lifetime: 5 * 24 * 3600 * SECOND,
    bounceLifetime: 5 * 24 * 3600 * SECOND,
    delayWarning: 4 * 3600 * SECOND,
    concurrency: 100,
    perDestination: 20,
    recipientsPerDelivery: 50,
    activeLimit: 20_000,
    inflowDelay: 1 * SECOND,
  },
  delivery: {
    subaddressSeparator: "+",
    quota: 0,
    quotaFull: "defer",
    maxReceived: 50,
  },
  workers: "auto" as "auto" | number,
  spool: {
    format: "journal",
  },
  storage: {
    poolSize: 20,
    leaseTime: 30_000,
    reconcileInterval: 300_000,
  },
  dkim: {
    domains: {},
  },
  authentication: {
    verify: true,
    ignoreClients: ["127.0.0.0/8", "::1"],
    exceptions: [],
    spf: { rejectFail: false },
    dkim: { maxSignatures: 5 },
    dmarc: { enforce: true, quarantine: "folder", junkFolder: "Junk", localDomains: "reject" },
    arc: { trustedSealers: [], seal: true },
  },
  dns: {
    dnssec: false,
  },
  outbound: {
    port: 25,
    tls: "opportunistic",
    connectionReuse: 10 * SECOND,
    mtaSts: true,
    dane: true,
  },
  tlsRpt: {
    send: true,
  },
  log: {
    level: "info",
    format: "auto",
  },
  admin: {
    enabled: true,
    listen: { address: "127.0.0.1", port: 8025 },
    auth: "token",
    sessionLifetime: 12 * 3600 * SECOND,
    traceRetention: 7 * 24 * 3600 * SECOND,
    traceMaxSize: 1024 * MiB,
  },
  metrics: {
    enabled: true,
    auth: "token",
  },
} as const;

/** Longest MTA-STS max_age (RFC 8461 §3.2: 31557600 seconds). */
export const MAX_MTA_STS_AGE = 31_557_600 * SECOND;

/** Smallest allowed `limits.commandLine`: RFC 5321 §4.5.3.1.4 requires 512 octets. */
export const MIN_COMMAND_LINE = 512;
