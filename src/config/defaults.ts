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
  },
  smtp: {
    bareNewline: "normalize",
    greetingDelay: 0,
    banner: "Petrel ESMTP",
  },
  submission: {
    senderMustMatchLogin: true,
  },
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
  },
  delivery: {
    subaddressSeparator: "+",
    quota: 0,
    quotaFull: "defer",
    maxReceived: 50,
  },
  spool: {
    format: "journal",
  },
  dkim: {
    domains: {},
  },
  outbound: {
    port: 25,
    tls: "opportunistic",
    connectionReuse: 10 * SECOND,
  },
  log: {
    level: "info",
  },
} as const;

/** Smallest allowed `limits.commandLine`: RFC 5321 §4.5.3.1.4 requires 512 octets. */
export const MIN_COMMAND_LINE = 512;
