import { join } from "node:path";
import pino, { type Logger } from "pino";
import type { Config } from "./config/schema.ts";
import { createSpool } from "./spool/create-spool.ts";
import type { Spool } from "./spool/spool.ts";
import { FileAccountStore } from "./accounts/file-account-store.ts";
import { PostgresAccountStore } from "./storage/postgres/account-store.ts";
import { PostgresAuthBans } from "./storage/postgres/auth-bans.ts";
import type { Accounts, AccountStore } from "./accounts/account-store.ts";
import type { PostgresPool } from "./storage/postgres/postgres-pool.ts";
import { SmtpServer, loadTlsContexts, type BoundListener } from "./server/smtp-server.ts";
import { bindListeners, closeListeners, type ListenerSocket } from "./server/listener-sockets.ts";
import { checkDataDirWritable, handOver, prepareDataDir } from "./system/data-dir.ts";
import { lockDataDir } from "./system/data-dir-lock.ts";
import { checkOwnerReachable, dropPrivileges, resolveDeliveryOwner, type RunAs } from "./system/privileges.ts";
import { QueueManager } from "./queue/queue-manager.ts";
import { SqliteQueueStore } from "./queue/sqlite-queue-store.ts";
import { PostgresQueueStore } from "./storage/postgres/postgres-queue-store.ts";
import { PostgresDestinationSlots } from "./storage/postgres/postgres-destination-slots.ts";
import { openDatabase } from "./storage/postgres/open-database.ts";
import { nodeName } from "./storage/postgres/node-name.ts";
import { PostgresSpool } from "./storage/postgres/spool.ts";
import { NodeRegistry } from "./cluster/node-registry.ts";
import { InflowControl, type InflowGate } from "./queue/inflow.ts";
import { systemClock, type Clock } from "./mail/clock.ts";
import type { Check } from "./policy/check.ts";
import { PolicyPipeline } from "./policy/pipeline.ts";
import { relayCheck, type RecipientDirectory } from "./policy/checks/relay.ts";
import { senderLoginCheck } from "./policy/checks/sender-login.ts";
import { ClientLimits, clientLimitsCheck, type ClientLimitsCheckOptions, type SharedBans } from "./policy/checks/client-limits.ts";
import { hopCountCheck } from "./policy/checks/hop-count.ts";
import { RateLimits } from "./policy/checks/rate-limits.ts";
import { Dnsbl } from "./policy/checks/dnsbl.ts";
import { loadPlugins, PluginLoadError } from "./policy/plugins.ts";
import type { RecordResolver } from "./dns/records.ts";
import { configIssue, startupConfigError } from "./config/load.ts";
import { Intake } from "./intake/intake.ts";
import { SmtpReceptionFactory } from "./intake/smtp-reception.ts";
import { LocalAgent } from "./delivery/local-agent.ts";
import type { MaildirOwner } from "./delivery/maildir.ts";
import { LmtpAgent } from "./delivery/lmtp-agent.ts";
import { createRouter, type ConfiguredRoute } from "./delivery/router.ts";
import { RemoteAgent } from "./delivery/remote-agent.ts";
import { createResolver, type ClosableResolver, type Resolver } from "./dns/resolver.ts";
import { readFile } from "node:fs/promises";
import { createDsnSender } from "./delivery/bounce-agent.ts";
import type { DeliveryAgent, Router } from "./queue/ports.ts";
import { startControlSocket } from "./admin/control-socket.ts";
import type { TlsContextProvider } from "./server/tls-contexts.ts";
import { OcspStapler } from "./server/ocsp-stapler.ts";
import type { OcspResponder } from "./server/ocsp.ts";
import { FileAcmeStore, type AcmeStore } from "./acme/acme-store.ts";
import { PostgresAcmeStore } from "./storage/postgres/acme-store.ts";
import { PostgresOrderLease } from "./storage/postgres/acme-lease.ts";
import { AcmeService } from "./acme/acme-service.ts";
import { acmeHttp01Handler, acmeTlsAlpnResponder, ChallengeResponses } from "./acme/challenges.ts";
import { certificateNames } from "./acme/renewal.ts";
import { startHttpListener, startHttpsListener, type WebHandler, type WebListener } from "./web/web-listener.ts";
import { mtaStsPolicyHandler } from "./mta-sts/policy-handler.ts";
import { configuredPolicy, formatPolicy } from "./mta-sts/policy.ts";
import { PolicyCache } from "./mta-sts/sts-cache.ts";
import { StsPolicies } from "./mta-sts/sts-policies.ts";
import { TlsRptAggregate } from "./tls-rpt/aggregate.ts";
import type { TlsRptCounts } from "./tls-rpt/day-counts.ts";
import { PostgresTlsRptCounts } from "./storage/postgres/postgres-tls-rpt-counts.ts";
import { PostgresDkimKeyStore } from "./storage/postgres/dkim-key-store.ts";
import { TlsReportSender, reportSettings } from "./tls-rpt/report-sender.ts";
import { serverStatus } from "./admin/server-status.ts";
import { petrelVersion } from "./system/version.ts";
import { milterCheck } from "./policy/milter/milter-check.ts";
import { SigningKeys } from "./mailauth/signing-keys.ts";
import { mailauthResolver } from "./mailauth/dns-resolver.ts";
import { DEFAULT_SPF_TIME_LIMIT } from "./mailauth/spf.ts";
import { MessageSigner } from "./intake/message-signer.ts";
import type { AuthenticationOptions } from "./policy/checks/authentication.ts";
import { spfCheck } from "./policy/checks/spf.ts";
import { dkimCheck } from "./policy/checks/dkim.ts";
import { arcCheck } from "./policy/checks/arc.ts";
import { dmarcCheck } from "./policy/checks/dmarc.ts";
import { noEvents, type EventSink } from "./events/petrel-event.ts";
import { AdminService, bindAdminListeners, closeAdminListeners } from "./admin/admin-service.ts";
import { loadConfig } from "./config/load.ts";
import { ConfigError } from "./config/config-error.ts";
import { setLogLevel } from "./system/logger.ts";
import { reloadedConfig, restartOnlyChanges, type ReloadReport } from "./config/reload-plan.ts";
import { WorkerPool } from "./workers/worker-pool.ts";
import { workerCount } from "./workers/worker-count.ts";

/**
 * Petrel in one process: the composition root that wires the boxes of
 * docs/architecture.md together — listener → session → policy → intake →
 * spool → queue manager → agents — from one validated configuration.
 * Nothing here decides anything; it only connects.
 *
 * Longer than a file should be, on purpose: it is the one composition root
 * (docs/architecture.md), so every box — the reception with its checks and
 * intake, the queue, the agents, TLS, ACME and the web listeners — is wired
 * here, in named steps, and nowhere else.
 */

export interface MtaOptions {
  readonly log: Logger;
  /** The queue's and the agents' time (and the sessions' with `workers: 1`; SMTP workers keep the system clock). */
  readonly clock?: Clock;
  /** Remote delivery agent (outbound SMTP to MX hosts); built from the config when absent. */
  readonly remote?: DeliveryAgent;
  /** DNS resolver; built from `dns.servers` when absent. */
  readonly resolver?: PolicyResolver;
  /** Extra CA trusted when verifying outbound TLS, MTA-STS policy hosts and TLS-RPT HTTPS endpoints (tests). */
  readonly ca?: string | Buffer;
  /** HTTPS port of MTA-STS policy hosts (443; tests run theirs elsewhere). */
  readonly mtaStsPort?: number;
  /** Delay past the soft error limit (tests pass 0). */
  readonly errorSleep?: number;
  /** fsync Maildir files (tests may turn it off for speed). */
  readonly fsync?: boolean;
  /** Listen for the CLI on <dataDir>/control.sock (default true). */
  readonly controlSocket?: boolean;
  /** The system's resolver configuration when `dns.servers` is empty (default /etc/resolv.conf; tests inject one). */
  readonly resolvConf?: string;
  /**
   * Switch the whole process to this user once the listeners are bound and the
   * TLS keys read, before anything in the data directory is opened (`petrel
   * serve` started as root). Never in tests that run Petrel in-process.
   */
  readonly runAs?: RunAs;
  /** Aborting it stops start-up at the next step (a signal during start-up); startMta then rejects with the reason. */
  readonly signal?: AbortSignal;
  /** How the ACME client polls the CA (tests poll fast); acme-client's defaults otherwise. */
  readonly acmePolling?: { readonly min: number; readonly max: number };
  /** Start the ACME service's first check at once (default true; tests call `acme.check()`). */
  readonly acmeAutoStart?: boolean;
  /** Fetch OCSP responses at once (default true; tests call `ocsp.refresh()`). */
  readonly ocspAutoStart?: boolean;
  /** More checks, asked after the configured ones (a plugin loader; tests); objects of this process, so only with `workers: 1`. */
  readonly checks?: readonly Check[];
  /** The file the configuration came from, read again by `reload()`; absent: the embedded default. */
  readonly configPath?: string;
}

export interface Mta {
  readonly smtp: Reception;
  readonly queue: QueueManager;
  readonly accounts: AccountStore;
  /** This node in the cluster's registry (`storage.kind: postgres`), else null. */
  readonly node: NodeRegistry | null;
  /** The AUTH-failure bans shared by the nodes (`storage.kind: postgres`), else null. */
  readonly authBans: PostgresAuthBans | null;
  /**
   * `petrel reload` and SIGHUP: read the configuration file again and apply
   * what can change without dropping a connection (ReloadReport says what
   * was applied and what needs a restart); re-read the TLS certificates and
   * the system's resolvers. A configuration with errors rejects with the
   * ConfigError start-up would have shown, and nothing changes.
   */
  reload(): Promise<ReloadReport>;
  /** The event bus, the trace, the metrics and the admin listeners. */
  readonly admin: AdminService;
  /** The certificates every TLS listener serves. */
  readonly tls: TlsContextProvider;
  /** Automatic certificates, when `tls.acme` is configured. */
  readonly acme: AcmeService | null;
  /** OCSP stapling, when `tls.ocspStapling` is on. */
  readonly ocsp: OcspStapler | null;
  /** HTTP(S) listeners: ACME challenges, MTA-STS policy. */
  readonly web: readonly WebListener[];
  /** The SMTP worker processes (`workers:` above 1); null when this process serves the sessions. */
  readonly workers: WorkerPool | null;
  close(): Promise<void>;
}

/**
 * The account store, opened the one way every process opens it: accounts.json in the data
 * directory, or with `storage.kind: postgres` the cluster's database (`database`, which a server
 * node passes with `listen` so that it hears of every change; the CLI loads once).
 */
export async function openAccounts(config: Config, log: Logger, database: PostgresPool | null = null, listen = true): Promise<AccountStore & { close?(): Promise<void> }> {
  if (config.storage.kind === "postgres") {
    if (database === null) throw new Error("storage.kind is postgres: the accounts are in the database, which this command does not open");
    return PostgresAccountStore.fromConfig(config, database, { listen, onError: (message) => log.error({}, message), onReconnect: () => log.info({}, "accounts: listening to the database again; reloaded") });
  }
  return FileAccountStore.fromConfig(config, {
    onReloadError: (err) => log.error({ err: err.message }, "accounts file unreadable; keeping the last good copy"),
  });
}

/**
 * The spool and the queue manager over it — what every process that reads
 * or changes the queue opens (`petrel serve`, and the queue tools when no
 * server runs). Without a router the queue only loads, lists and changes
 * state: nothing is delivered, and no DNS resolver or agent is built. The
 * caller holds the data directory's lock. With `database` (storage.kind
 * postgres) the queue state is the cluster's, leased per node: `toolOf` names
 * the queue tools' own lease holder, never sharing the running node's.
 */
export async function openQueue(
  config: Config,
  options: {
    log: Logger; accounts: AccountStore; clock?: Clock; router?: Router; signingKeys?: SigningKeys; events?: EventSink;
    /** The cluster's database (storage.kind postgres): the spool, the queue state and the leases are there. */
    database?: PostgresPool | null;
    /** A queue tool's lease holder name beside the node's (petrel queue without a local server). */
    toolOf?: string;
  },
): Promise<{ spool: Spool; queue: QueueManager; intake: Intake; inflow: InflowControl }> {
  const log = options.log;
  const clock = options.clock ?? systemClock;
  const spool = await configuredSpool(config, log, options.database);
  const accounts = options.accounts;
  // The intake tells the queue about every message it stores — DSNs the queue itself asks for included.
  let queue: QueueManager | undefined;
  // Received mail is paced while the queue falls behind (Postfix in_flow_delay, queue/inflow.ts).
  // Up to queue.concurrency messages may be accepted ahead of the deliveries started (Postfix: its process limit).
  const inflow = new InflowControl({ clock, delay: config.queue.inflowDelay, limit: config.queue.concurrency });
  const intake = buildIntake(config, { spool, log, clock, onCommitted: (id) => queue?.enqueue(id), signingKeys: options.signingKeys, events: options.events, inflow });
  const stateDir = join(config.dataDir, "queue-state");
  queue = new QueueManager({
    spool,
    ...queueStore(config, stateDir, clock, log, options.database ?? null, options.toolOf),
    resolve: (address) => accounts.resolveRecipient(address),
    router: options.router,
    sendDsn: createDsnSender({ submit: (m) => intake.submit(m), hostname: config.hostname, clock }),
    clock,
    log: log.child({ component: "queue" }),
    settings: config.queue,
    maxReceived: config.delivery.maxReceived,
    events: options.events,
    inflow,
  });
  return { spool, queue, intake, inflow };
}

/** The queue store a configuration asks for: the embedded SQLite, or the cluster's PostgreSQL with this node's leases and destination slots. */
function queueStore(config: Config, stateDir: string, clock: Clock, log: Logger, database: PostgresPool | null, toolOf: string | undefined) {
  if (config.storage.kind !== "postgres" || database === null) return { store: new SqliteQueueStore(stateDir), legacyStateDir: stateDir };
  const node = nodeName(config.storage);
  const holder = toolOf === undefined ? node : `${node}/${toolOf}`;
  const leaseMs = config.storage.leaseTime;
  return {
    store: new PostgresQueueStore({ pool: database, holder, leaseMs, clock }),
    node,
    reconcileInterval: config.storage.reconcileInterval,
    ...(toolOf === undefined ? { slots: new PostgresDestinationSlots({ pool: database, node, leaseMs, clock, onError: (err: unknown) => log.error({ err }, "destination slots") }) } : {}),
  };
}

/**
 * The spool `config` asks for: under dataDir (create-spool.ts), or in the cluster's database for
 * storage.kind postgres — chosen here, so that spool/ needs nothing of storage/.
 */
async function configuredSpool(config: Config, log: Logger, database: PostgresPool | null | undefined): Promise<Spool> {
  if (config.storage.kind !== "postgres") return createSpool(config.dataDir, config.spool.format, (m) => log.warn(m));
  if (!database) throw new Error("storage.kind is postgres but the database is not open: the spool is in PostgreSQL");
  return new PostgresSpool({ pool: database, node: nodeName(config.storage), onWarning: (m) => log.warn(m) });
}

/**
 * Where TLS-RPT counts its days: the data directory of this node, or with storage.kind postgres
 * the cluster's database, so each policy domain gets one report covering every node (RFC 8460 §4).
 */
function configuredTlsRptCounts(config: Config, o: { log: Logger; clock: Clock; database: PostgresPool | null }): TlsRptCounts {
  const onError = (message: string) => o.log.warn(message);
  if (config.storage.kind !== "postgres") return new TlsRptAggregate({ dir: join(config.dataDir, "tls-rpt"), clock: o.clock, onError });
  if (!o.database) throw new Error("storage.kind is postgres but the database is not open: the TLS-RPT counts are in PostgreSQL");
  return new PostgresTlsRptCounts({ pool: o.database, node: nodeName(config.storage), clock: o.clock, onError });
}

/**
 * The one way into the spool, for received mail and for the messages Petrel composes; with the
 * DKIM keys of `dkim.domains` it signs what authenticated users send and what Petrel composes,
 * and seals what the checks ask to be sealed.
 */
export function buildIntake(
  config: Config, options: { spool: Spool; log: Logger; clock?: Clock; onCommitted?: (id: string) => void; signingKeys?: SigningKeys; events?: EventSink; inflow?: InflowGate },
): Intake {
  const clock = options.clock ?? systemClock;
  const keys = options.signingKeys;
  return new Intake({
    spool: options.spool,
    hostname: config.hostname,
    primaryDomain: config.domains[0] ?? config.hostname,
    headerSizeLimit: config.limits.headerSize,
    clock,
    log: options.log,
    onCommitted: options.onCommitted,
    ...(keys ? { signer: new MessageSigner({ keys, clock, log: options.log.child({ component: "dkim" }), headerSizeLimit: config.limits.headerSize }) } : {}),
    events: options.events,
    ...(options.inflow ? { inflow: options.inflow } : {}),
  });
}

/**
 * The DKIM keys of `dkim.domains`, at start-up and at each reload: a missing or unsafe key stops
 * start-up (fails the reload) with its path. storage.kind postgres: the cluster's keys, from the
 * database (`database`), so that every node and every SMTP worker signs with the same key.
 */
export function loadSigningKeys(config: Config, database: PostgresPool | null = null, log?: Pick<Logger, "info" | "warn">): Promise<SigningKeys> {
  if (config.storage.kind !== "postgres" || database === null) return SigningKeys.load(config.dataDir, config.dkim.domains);
  const store = new PostgresDkimKeyStore({ pool: database, node: nodeName(config.storage) });
  return SigningKeys.load(config.dataDir, config.dkim.domains, {
    store,
    note: (level, message) => log?.[level]({ component: "dkim" }, message),
  });
}

/** The resolver the checks ask (DNS lists, plugins) and the agents share. */
export type PolicyResolver = Resolver & RecordResolver;

/**
 * The built-in checks, in the order they are asked: per-IP connection
 * limits and AUTH failure bans, rates (every request counts, so they come
 * first, as anvil is asked before Postfix's restrictions), DNS lists
 * (before relay, so a listed client learns nothing of which recipients
 * exist), sender ownership on submission, relay and unknown local
 * recipients, mail loops. Plugins and other checks are appended.
 */
export function buildChecks(
  config: Config,
  options: {
    accounts: Accounts & RecipientDirectory; clock?: Clock; log?: Logger; resolver?: RecordResolver; signingKeys?: SigningKeys;
    primaryVerdict?: ClientLimitsCheckOptions["primaryVerdict"];
    primaryAuthFailed?: ClientLimitsCheckOptions["primaryAuthFailed"];
    /** The cluster's AUTH-failure bans (storage.kind postgres). */
    sharedBans?: SharedBans;
    /** The reception's per-client counts, kept across reloads. */
    clientLimits?: ClientLimits;
  },
): Check[] {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? pino({ level: "silent" });
  const checks: Check[] = [
    clientLimitsCheck({
      ...config.limits, clock: options.clock,
      ...(options.primaryVerdict ? { primaryVerdict: options.primaryVerdict } : {}),
      ...(options.primaryAuthFailed ? { primaryAuthFailed: options.primaryAuthFailed } : {}),
      ...(options.sharedBans ? { shared: options.sharedBans } : {}),
      ...(options.clientLimits ? { limits: options.clientLimits } : {}),
    }),
  ];
  const rates = config.limits.rates;
  const anyRate = [rates.mx, rates.submission, rates.user].some((r) => r.messages > 0 || r.recipients > 0 || ("connections" in r && r.connections > 0));
  if (anyRate) checks.push(new RateLimits(rates, { log: log.child({ check: "rate-limits" }), clock }));
  if (config.dnsbl.sites.length > 0) {
    if (!options.resolver) throw new Error("dnsbl.sites needs a resolver");
    checks.push(new Dnsbl(config.dnsbl, { resolver: options.resolver, clock, log: log.child({ check: "dnsbl" }) }));
  }
  if (config.submission.senderMustMatchLogin) checks.push(senderLoginCheck((user, address) => options.accounts.mayUseSender(user, address)));
  checks.push(relayCheck(options.accounts), hopCountCheck(config.delivery.maxReceived));
  if (config.authentication.verify) {
    if (!options.resolver) throw new Error("authentication.verify needs a resolver");
    checks.push(...authenticationChecks(config, { ...options, resolver: options.resolver, clock, log }));
  }
  return checks;
}

/**
 * SPF, DKIM, ARC and DMARC of mail on mx listeners, in the order of their Authentication-Results
 * resinfo; at the end of data ARC runs after DKIM and DMARC after all three (their `after`).
 */
function authenticationChecks(
  config: Config,
  options: { accounts: RecipientDirectory; clock: Clock; log: Logger; resolver: RecordResolver; signingKeys?: SigningKeys },
): Check[] {
  const keys = options.signingKeys;
  const shared: AuthenticationOptions = {
    settings: config.authentication,
    resolver: mailauthResolver(options.resolver),
    directory: options.accounts,
    hostname: config.hostname,
    clock: options.clock,
    headerSizeLimit: config.limits.headerSize,
    // RFC 7208 §4.6.4 asks for at least 20 s; a shorter policy.timeout leaves SPF half of it.
    spfTimeLimit: Math.min(DEFAULT_SPF_TIME_LIMIT, Math.floor(config.policy.timeout / 2)),
    canSeal: (domain) => keys?.sealingKeyFor(domain) !== undefined,
    log: options.log.child({ check: "dmarc" }),
  };
  return [spfCheck(shared), dkimCheck(shared), arcCheck(shared), dmarcCheck(shared)];
}

/**
 * The configured mail filters (`milters:`), asked after Petrel's own checks:
 * a recipient the relay check refused never reaches them (Postfix asks its
 * milters after smtpd's restrictions too).
 */
export function buildMilters(config: Config, log: Logger): Check[] {
  return config.milters.map((m) => milterCheck(m, {
    hostname: config.hostname, headerSizeLimit: config.limits.headerSize, log, stageTimeout: config.policy.timeout,
  }));
}

/**
 * The configured plugins' checks, loaded once the process runs as its own
 * user (a plugin is code: it never runs as root). A plugin that cannot load
 * is a configuration error naming its entry (exit 78).
 */
export async function loadConfiguredPlugins(
  config: Config, options: { log: Logger; clock: Clock; resolver: PolicyResolver; reserved: readonly string[] },
): Promise<Check[]> {
  try {
    return await loadPlugins(config.plugins, { ...options, hostname: config.hostname });
  } catch (err) {
    if (!(err instanceof PluginLoadError)) throw err;
    throw startupConfigError(config, [configIssue(config, ["plugins", err.index, "path"], err.path, err.reason)]);
  }
}

/** What receives mail: the listeners, each client served through the checks into the intake. */
export interface Reception {
  readonly config: Config;
  /** The spool received mail goes into. */
  readonly spool: Spool;
  /** Where each listener is bound (port 0 in the config becomes the real port). */
  readonly listeners: readonly BoundListener[];
  readonly tls: TlsContextProvider;
  /**
   * A reload, in two steps: the new checks are built (a plugin or filter
   * that cannot be set up rejects here, with nothing changed), then `apply`
   * serves new connections by `config` and through the new checks;
   * connections in progress keep theirs.
   */
  prepare(config: Config): Promise<() => void>;
  /** Stop listening, let transactions in flight finish (limits.shutdownGrace), then close the spool if it was opened here. */
  close(): Promise<void>;
}

export interface ReceptionOptions {
  readonly log: Logger;
  /** Logins, sender ownership and local recipients. */
  readonly accounts: Accounts & RecipientDirectory;
  readonly clock?: Clock;
  /** The intake (startMta shares it with the queue's DSNs); built over `spool` when absent. */
  readonly intake?: Intake;
  /** The spool to receive into when no intake is given; the configured spool is opened (and closed by close()) when absent. */
  readonly spool?: Spool;
  /** The cluster's database (storage.kind postgres), where a spool opened here lives. */
  readonly database?: PostgresPool | null;
  /** Told the queue id of each message once it is durable (when the intake is built here). */
  readonly onCommitted?: (id: string) => void;
  /** More checks, asked after the configured ones and the plugins. */
  readonly checks?: readonly Check[];
  /** For message authentication, DNS lists and plugins; built from `dns.servers` (and closed with the reception) when absent and needed. */
  readonly resolver?: PolicyResolver;
  /** The DKIM keys (`dkim.domains`) that sign and seal; loaded here when absent. */
  readonly signingKeys?: SigningKeys;
  /** Delay past the soft error limit (Postfix smtpd_error_sleep_time, 1 s); tests pass 0. */
  readonly errorSleep?: number;
  /** Listeners bound beforehand (by `petrel serve`, before it gives up root). */
  readonly sockets?: readonly ListenerSocket[];
  /** Certificates loaded beforehand (keys only root may read). */
  readonly tls?: TlsContextProvider;
  /** The OCSP response to staple for a certificate, if one is known. */
  readonly ocspResponse?: OcspResponder;
  /** Told connections, refusals, logins that failed (the trace, metrics). */
  readonly events?: EventSink;
  /** In an SMTP worker: the primary's count of connections per client (client-limits.ts). */
  readonly primaryVerdict?: ClientLimitsCheckOptions["primaryVerdict"];
  /** In an SMTP worker: a failed AUTH told to the primary, which counts them across workers (client-limits.ts). */
  readonly primaryAuthFailed?: ClientLimitsCheckOptions["primaryAuthFailed"];
  /** The cluster's AUTH-failure bans (storage.kind postgres), kept across reloads. */
  readonly sharedBans?: SharedBans;
  /** Log a "listening" line per listener (default true; a worker's listeners are the primary's). */
  readonly announce?: boolean;
}

/** Start receiving mail: the checks, the policy pipeline, the intake and the listeners, wired. */
export async function startReception(config: Config, options: ReceptionOptions): Promise<Reception> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  const ownSpool = options.intake === undefined && options.spool === undefined;
  const spool = options.intake?.spool ?? options.spool ?? await configuredSpool(config, log, options.database);
  await spool.open(); // idempotent: an injected spool may already be open
  let signingKeys: SigningKeys;
  try {
    signingKeys = options.signingKeys ?? await loadSigningKeys(config);
  } catch (err) {
    if (ownSpool) await spool.close();
    throw err;
  }
  const intake = options.intake ?? buildIntake(config, { spool, log, clock, onCommitted: options.onCommitted, signingKeys, events: options.events });
  const needsResolver = config.authentication.verify || config.dnsbl.sites.length > 0 || config.plugins.length > 0;
  const ownResolver = options.resolver === undefined && needsResolver ? createResolver({ servers: config.dns.servers }) : undefined;
  const resolver = options.resolver ?? ownResolver;
  const events = options.events ?? noEvents;
  let plugins: Check[];
  let pipeline: PolicyPipeline;
  // Plugins are code, loaded once: a reload keeps them (a change of plugins: needs a restart).
  // Connections counted, AUTH failures and bans outlive a reload: one set of counts for the reception.
  const clientLimits = new ClientLimits({ ...config.limits, clock, ...(options.sharedBans ? { shared: options.sharedBans } : {}) });
  const pipelineFor = (c: Config) => {
    const builtIn = buildChecks(c, {
      accounts: options.accounts, clock, log, resolver, signingKeys, primaryVerdict: options.primaryVerdict,
      primaryAuthFailed: options.primaryAuthFailed, sharedBans: options.sharedBans, clientLimits,
    });
    return new PolicyPipeline({
      checks: [...builtIn, ...buildMilters(c, log), ...plugins, ...(options.checks ?? [])],
      authservId: c.policy.authservId ?? c.hostname,
      timeout: c.policy.timeout,
      timer: clock,
      events,
    });
  };
  try {
    const reserved = buildChecks(config, { accounts: options.accounts, clock, log, resolver, signingKeys }).map((c) => c.name);
    plugins = resolver ? await loadConfiguredPlugins(config, { log, clock, resolver, reserved }) : [];
    pipeline = pipelineFor(config);
  } catch (err) {
    ownResolver?.close();
    if (ownSpool) await spool.close();
    throw err;
  }
  const factory = new SmtpReceptionFactory({ pipeline, intake, credentials: options.accounts, primaryDomain: config.domains[0] ?? config.hostname, events });
  let server: SmtpServer;
  try {
    server = await SmtpServer.start(config, {
      log, factory, errorSleep: options.errorSleep, sockets: options.sockets, tls: options.tls, ocspResponse: options.ocspResponse, events,
      announce: options.announce,
    });
  } catch (err) {
    ownResolver?.close();
    if (ownSpool) await spool.close();
    throw err;
  }
  let closing: Promise<void> | null = null;
  return {
    config,
    spool,
    listeners: server.listeners,
    tls: server.tls,
    async prepare(next: Config) {
      // A configuration error found while building (a DNS list without a resolver) is the same one start-up would report.
      if (next.dnsbl.sites.length > 0 && !resolver) throw startupConfigError(next, [configIssue(next, ["dnsbl", "sites"], "(set)", "needs a restart: no DNS resolver was started for DNS lists")]);
      const built = pipelineFor(next);
      return () => {
        server.reconfigure(next);
        factory.usePipeline(built);
      };
    },
    close() {
      closing ??= (async () => {
        await server.close();
        ownResolver?.close();
        if (ownSpool) await spool.close();
      })();
      return closing;
    },
  };
}

/**
 * Reception by SMTP worker processes (worker-pool.ts): the listeners are
 * this process's, the sessions the workers'. A reload reaches every worker
 * (each builds its new checks and applies them, or the reload rejects).
 */
function workerReception(
  config: Config, o: { pool: WorkerPool; spool: Spool; sockets: readonly ListenerSocket[]; tls: TlsContextProvider; log: Logger },
): Reception {
  for (const s of o.sockets) {
    o.log.info({ role: s.listener.role, address: s.address, port: s.port, proxyProtocol: s.listener.proxyProtocol, workers: o.pool.size }, "listening");
  }
  let closing: Promise<void> | null = null;
  return {
    config,
    spool: o.spool,
    listeners: o.sockets.map((s) => ({ role: s.listener.role, address: s.address, port: s.port })),
    tls: o.tls,
    async prepare(next) {
      await o.pool.reload(next);
      return () => {};
    },
    close() {
      closing ??= (async () => {
        await closeListeners(o.sockets);
        await o.pool.close();
      })();
      return closing;
    },
  };
}

/**
 * The agents that carry mail and the transport map that picks one per
 * recipient: Maildir, LMTP, and SMTP to MX hosts or relays, with the DNS
 * resolver they share, the MTA-STS policies they honour and the TLS-RPT
 * counts they feed. `close` ends the agents' cached connections.
 */
export function buildDelivery(
  config: Config,
  options: Pick<MtaOptions, "log" | "clock" | "remote" | "fsync" | "resolver" | "ca" | "resolvConf" | "mtaStsPort"> & {
    accounts: AccountStore; owner?: MaildirOwner;
    /** The TLS-RPT counts already kept (a reload builds new agents, not a second writer of the counts); this node's files when absent. */
    tlsRpt?: TlsRptCounts;
  },
): { router: Router; resolver: PolicyResolver; tlsRpt: TlsRptCounts; close: () => Promise<void> } {
  const { log, accounts } = options;
  const clock = options.clock ?? systemClock;
  const local = new LocalAgent({
    maildirRoot: join(config.dataDir, "mail"),
    hostname: config.hostname,
    quotaFull: config.delivery.quotaFull,
    maxReceived: config.delivery.maxReceived,
    mailboxExists: (address) => accounts.hasMailbox(address),
    quotaFor: userQuota(accounts, config.delivery.quota),
    fsync: options.fsync,
    owner: options.owner,
  });
  const resolver = options.resolver ?? createResolver({ servers: config.dns.servers, resolvConf: options.resolvConf, dnssec: config.dns.dnssec });
  const outbound = config.outbound;
  const warn = (message: string) => log.warn(message);
  const mtaSts = outbound.mtaSts
    ? new StsPolicies({
      resolver, clock,
      cache: new PolicyCache({ dir: join(config.dataDir, "mta-sts"), onError: warn }),
      fetch: { ...(options.ca ? { ca: options.ca } : {}), ...(options.mtaStsPort ? { port: options.mtaStsPort } : {}) },
      onError: warn,
    })
    : undefined;
  const tlsRpt = options.tlsRpt ?? new TlsRptAggregate({ dir: join(config.dataDir, "tls-rpt"), clock, onError: warn });
  const remoteBase = {
    resolver,
    heloName: outbound.heloName ?? config.hostname,
    sourceAddress: outbound.sourceAddress,
    sourceAddress6: outbound.sourceAddress6,
    reuseMs: outbound.connectionReuse,
    timer: clock,
    log,
    ...(options.ca ? { ca: options.ca } : {}),
    ...(mtaSts ? { mtaSts } : {}),
    dane: outbound.dane,
    tlsReports: tlsRpt,
  };
  const agents: { close(): Promise<void> }[] = [];
  const remote = options.remote ?? new RemoteAgent({ ...remoteBase, port: outbound.port, tls: outbound.tls });
  if (remote instanceof RemoteAgent) agents.push(remote);
  const routes: ConfiguredRoute[] = config.transport.map((t) => {
    if (t.type === "local") return { domains: t.domains, transport: "local", destination: "", agent: local };
    if (t.type === "lmtp") {
      const host = t.host!;
      const target = host.startsWith("/") ? { path: host } : { host, port: t.port ?? 24 };
      const agent = new LmtpAgent({ target, lhloName: config.hostname, reuseMs: outbound.connectionReuse, timer: clock });
      agents.push(agent);
      return { domains: t.domains, transport: "lmtp", destination: `lmtp:${host}:${t.port ?? 24}`, agent };
    }
    const auth = t.auth;
    const agent = new RemoteAgent({
      ...remoteBase,
      port: t.port ?? outbound.port,
      tls: t.tls ?? outbound.tls,
      ...(t.host ? { relay: { host: t.host, port: t.port ?? 25 } } : {}),
      ...(auth ? { auth: { user: auth.user, password: async () => (await readFile(auth.passwordFile, "utf8")).replace(/\r?\n$/, "") } } : {}),
    });
    agents.push(agent);
    return { domains: t.domains, transport: "remote", destination: t.host ? `relay:${t.host}:${t.port ?? 25}` : "", agent };
  });
  return {
    router: createRouter({ local, remote, routes }),
    resolver,
    tlsRpt,
    close: async () => void (await Promise.all(agents.map((a) => a.close()))),
  };
}

/**
 * How often a node of a cluster looks for a certificate another node stored: a look of one row,
 * by the clock rather than LISTEN/NOTIFY, since a notification sent while a node's connection is
 * down is lost and a certificate is needed within minutes, not milliseconds (a renewed one comes
 * a month before the old one expires; a first one replaces a placeholder).
 */
const ACME_FOLLOW_EVERY = 60_000;

/**
 * Start Petrel. The order matters: the data directory is checked and locked
 * before anything in it is opened (a second instance stops there, having
 * changed nothing); listeners are bound — SMTP, and the HTTP/HTTPS listeners
 * of ACME and MTA-STS (ports 80 and 443) — and TLS keys read while the
 * process may still be root; then it switches to `runAs`, and only then opens
 * the spool, the queue and the accounts, and serves. Every step undoes the
 * ones before it when a later one fails.
 */
export async function startMta(config: Config, options: MtaOptions): Promise<Mta> {
  const log = options.log;
  const undo: Array<() => Promise<void> | void> = [];
  const step = () => options.signal?.throwIfAborted();
  try {
    step();
    const runAs = options.runAs;
    await prepareDataDir(config, runAs);
    const lock = await lockDataDir(config.dataDir);
    undo.push(() => lock.release());
    step();
    const acmeConfig = config.tls.acme;
    const mtaSts = config.mtaSts;
    const store = acmeConfig ? new FileAcmeStore(config.dataDir) : null;
    if (store) {
      // Served until the first certificate arrives; written as root, so handed to the user that renews it.
      await store.ensurePlaceholder(config.hostname, certificateNames(config.hostname, acmeConfig!.domains, mtaSts ? config.domains : []));
      if (runAs) await handOver([store.dir, ...store.files()], runAs);
    }
    const tls = await loadTlsContexts(config, log, store ? { cert: store.certificatePath, key: store.certificatePath } : undefined);
    undo.push(() => tls.close());
    const ocsp = config.tls.ocspStapling ? new OcspStapler({ chains: () => tls.chains(), clock: options.clock ?? systemClock, log }) : null;
    if (ocsp) {
      undo.push(() => ocsp.close());
      tls.on("reload", () => void ocsp.refresh());
    }
    const ocspResponse = ocsp ? { ocspResponse: ocsp.responder } : {};
    if (runAs && config.tls.cert === undefined && !store) {
      // The generated certificate was written as root: give it to the user that reloads it.
      const dir = join(config.dataDir, "tls");
      await handOver([dir, join(dir, "self-signed.crt"), join(dir, "self-signed.key")], runAs);
    }
    const workers = workerCount(config.workers);
    if (workers > 1 && options.checks) throw new Error("MtaOptions.checks are objects of this process: they need workers: 1");
    // With workers, a connection is accepted here and read only by the worker it is handed to.
    const sockets = await bindListeners(config.listeners, config.limits.connections, { pauseOnConnect: workers > 1 });
    undo.push(() => closeListeners(sockets));
    const adminListeners = await bindAdminListeners(config, { tls, log });
    undo.push(() => closeAdminListeners(adminListeners));
    // The accounts open after the switch of user; the MTA-STS handler asks them from then on.
    let accountsOpened: AccountStore | undefined;
    const challenges = new ChallengeResponses();
    const web = await startWebListeners(config, {
      log, tls, challenges, ...ocspResponse,
      isLocalDomain: async (d) => (accountsOpened ? accountsOpened.isLocalDomain(d) : false),
    });
    undo.push(async () => {
      for (const w of web) await w.close();
    });
    step();
    const owner = await resolveDeliveryOwner(config);
    if (runAs) dropPrivileges(runAs, owner?.gid);
    checkOwnerReachable(config, owner);
    await checkDataDirWritable(config);
    await lock.writePidFile();
    step();

    const clock = options.clock ?? systemClock;
    const admin = await AdminService.open(config, { clock, log, listeners: adminListeners });
    undo.push(() => admin.close());
    const events = admin.bus;
    // storage.kind postgres: the cluster's shared database, opened (and migrated) once per process.
    const database = config.storage.kind === "postgres" ? await openDatabase(config.storage, log.child({ component: "database" })) : null;
    undo.push(async () => void (await database?.end()));
    // A node registers before it opens anything else: a name in use elsewhere stops start-up here.
    const node = config.storage.kind === "postgres" && database
      ? await NodeRegistry.register({
        pool: database, name: nodeName(config.storage), version: petrelVersion(), clock,
        onError: (message) => log.warn({}, message), onLost: (message) => log.error({}, message),
      })
      : null;
    undo.push(async () => void (await node?.close()));
    // After the database: a cluster's keys are there (a key only in this node's files is moved in now).
    const signingKeys = await loadSigningKeys(config, database, log);
    const accounts = await openAccounts(config, log, database);
    undo.push(async () => void (await accounts.close?.()));
    // storage.kind postgres: AUTH-failure bans count across the nodes (each keeps the bans in memory).
    const sharedBans = database
      ? await PostgresAuthBans.open({
        pool: database, clock,
        onError: (message) => log.error({}, message), onReconnect: () => log.info({}, "AUTH bans: listening to the database again; reloaded"),
      })
      : null;
    undo.push(async () => void (await sharedBans?.close()));
    const tlsRptCounts = configuredTlsRptCounts(config, { log, clock, database });
    let delivery = buildDelivery(config, { ...options, accounts, owner, tlsRpt: tlsRptCounts });
    const { resolver, tlsRpt } = delivery;
    const { spool, queue, intake, inflow } = await openQueue(config, { log, accounts, clock: options.clock, router: delivery.router, signingKeys, events, database });
    // SMTP workers load while the spool and the queue open; they serve once both are ready.
    const poolStarting = workers > 1
      ? WorkerPool.start({
        config, count: workers, sockets, spool, onCommitted: (id) => queue.enqueue(id), events, log, inflow, clock,
        ...(sharedBans ? { sharedBans } : {}),
        ...(options.errorSleep !== undefined ? { errorSleep: options.errorSleep } : {}),
      })
      : null;
    poolStarting?.catch(() => {}); // awaited below; a start that fails there is undone with the rest
    undo.push(async () => void (await (await poolStarting?.catch(() => null))?.close()));
    accountsOpened = accounts;
    logNameservers(resolver, log);
    await tlsRpt.start();
    undo.push(() => tlsRpt.close());
    await warnUnreadPostmaster(config, accounts, log);
    await spool.open();
    undo.push(() => spool.close());
    undo.push(() => delivery.close());
    await queue.start();
    undo.push(() => queue.stop());
    // TLS-RPT's daily reports (RFC 8460), queued as mail from this server or posted over HTTPS.
    const reports = config.tlsRpt.send
      ? new TlsReportSender({
        ...reportSettings(config), aggregate: tlsRpt, resolver, clock, hostname: config.hostname, log: log.child({ component: "tls-rpt" }),
        // Through the one intake, from the null reverse-path: a report that cannot be delivered is bounced to no one.
        submit: (content, to) => intake.submit({ mailFrom: "", recipients: to, content, needs8bit: false, smtputf8: false }),
        ...(options.ca ? { ca: options.ca } : {}),
      })
      : null;
    reports?.start();
    undo.push(() => reports?.close());
    step();
    const pool = poolStarting ? await poolStarting : null;
    pool?.serve();
    if (pool) admin.metrics?.watchWorkers(() => pool.status());
    const smtp = pool
      ? workerReception(config, { pool, spool, sockets, tls, log })
      : await startReception(config, {
        log, accounts, intake, tls, sockets, ...ocspResponse, clock: options.clock, checks: options.checks, resolver,
        errorSleep: options.errorSleep, signingKeys, events, ...(sharedBans ? { sharedBans } : {}),
      });
    undo.push(() => smtp.close());
    // storage.kind postgres: one certificate for the cluster, in the database; this node's file is its copy.
    const acmeStore: AcmeStore | null = store && database && node ? new PostgresAcmeStore({ pool: database, node: node.name, served: store }) : store;
    if (acmeStore && database) {
      challenges.share(acmeStore, { onError: (message) => log.warn({ component: "acme" }, message) });
    }
    const acme = acmeConfig && acmeStore
      ? new AcmeService({
        directory: acmeConfig.directory,
        email: acmeConfig.email,
        challenge: acmeConfig.challenge,
        names: async () => certificateNames(config.hostname, acmeConfig.domains, mtaSts ? await accounts.listDomains() : []),
        store: acmeStore,
        challenges,
        clock: options.clock ?? systemClock,
        ...(database && node ? { lease: new PostgresOrderLease({ pool: database, node: node.name, clock }), followEvery: ACME_FOLLOW_EVERY } : {}),
        log,
        onCertificate: () => tls.reload(),
        ...(acmeConfig.ca ? { ca: await readFile(acmeConfig.ca, "utf8") } : {}),
        ...(options.acmePolling ? { polling: options.acmePolling } : {}),
      })
      : null;
    if (acme) undo.push(() => acme.close());
    const startedAt = Date.now();
    const status = async () => serverStatus({
      version: petrelVersion(), pid: process.pid, hostname: config.hostname, dataDir: config.dataDir,
      startedAt, now: Date.now(), listeners: smtp.listeners, queue: await queue.totals(), destinations: await queue.summary(),
      certificates: smtp.tls.certificates(), cluster: node ? { node: node.name, nodes: await node.nodes() } : null,
      ...(pool ? { workers: pool.status() } : {}),
    });
    let current = config;
    admin.attach({ queue, accounts, status, config: () => current });
    const reload = async (): Promise<ReloadReport> => {
      const file = await loadConfig(options.configPath);
      const { live, restart } = restartOnlyChanges(current, file);
      const next = reloadedConfig(current, file, live);
      // Everything that can fail is built before anything is applied. The DKIM keys are loaded
      // again when dkim.domains changed (new selectors: a rotation) here first, then by the SMTP
      // workers in prepare: a key only in this node's files is moved into a cluster's database by
      // this process. Unchanged, they are kept — a key under a selector never changes, and a
      // reload of anything else must not fail because the cluster's database is away.
      const nextKeys = live.includes("dkim") ? await loadSigningKeys(next, database, log) : null;
      const applyReception = await smtp.prepare(next);
      const routing = live.some((k) => k === "transport" || k === "outbound");
      const nextDelivery = routing ? buildDelivery(next, { ...options, accounts, owner, resolver, tlsRpt }) : null;
      applyReception();
      if (nextKeys !== null) signingKeys.replaceWith(nextKeys);
      if (live.includes("dns.servers")) (resolver as Partial<ClosableResolver>).setServers?.(next.dns.servers);
      (resolver as Partial<ClosableResolver>).reloadNameservers?.();
      if (nextDelivery || live.includes("queue")) {
        const old = nextDelivery ? delivery : null;
        if (nextDelivery) delivery = nextDelivery;
        // The old agents end once the deliveries they carry have finished.
        void queue.reconfigure({ ...(nextDelivery ? { router: nextDelivery.router } : {}), settings: next.queue }).then(() => old?.close());
      }
      if (live.includes("log.level")) setLogLevel(log, next.log.level);
      await smtp.tls.reload();
      current = next;
      const report = { applied: ["certificates", ...live], needsRestart: restart };
      log.info(report, "configuration reloaded");
      if (restart.length > 0) log.warn({ keys: restart }, `changed, but kept until a restart: ${restart.join(", ")}`);
      return report;
    };
    const control = options.controlSocket === false ? null : await startControlSocket(join(config.dataDir, "control.sock"), queue, log, status, reload);
    if (acme && options.acmeAutoStart !== false) acme.start();
    if (ocsp && options.ocspAutoStart !== false) void ocsp.refresh();
    let closing: Promise<void> | null = null;
    // One reload at a time: SIGHUP and `petrel reload` may come together.
    let reloading: Promise<unknown> = Promise.resolve();
    return {
      smtp, queue, accounts, node, authBans: sharedBans, tls, acme, ocsp, web, admin, workers: pool,
      reload() {
        const logged = () => reload().catch((err: unknown) => {
          if (err instanceof ConfigError) log.error({ errors: err.issues.map((i) => i.message) }, "configuration not reloaded: it has errors; the server keeps running with the one it had");
          throw err;
        });
        const r = reloading.then(logged, logged);
        reloading = r.catch(() => {});
        return r;
      },
      close() {
        closing ??= (async () => {
          await admin.stopListening();
          await acme?.close();
          ocsp?.close();
          for (const w of web) await w.close();
          await smtp.close();
          await control?.close();
          await reports?.close();
          await queue.stop();
          await delivery.close();
          await admin.close();
          await tlsRpt.close();
          await spool.close();
          await accounts.close?.();
          await sharedBans?.close();
          await node?.close();
          await database?.end();
          tls.close();
          await lock.release();
        })();
        return closing;
      },
    };
  } catch (err) {
    for (const u of undo.reverse()) await Promise.resolve().then(u).catch(() => {});
    throw err;
  }
}

/**
 * The HTTP and HTTPS listeners the configuration asks for: HTTP-01 answers on
 * `tls.acme.http`, TLS-ALPN-01 answers on `tls.acme.tlsAlpn`, the MTA-STS
 * policy on `mtaSts.listen`; one HTTPS listener serves both when they name the
 * same address and port.
 */
async function startWebListeners(
  config: Config,
  o: { log: Logger; tls: TlsContextProvider; challenges: ChallengeResponses; isLocalDomain: (domain: string) => Promise<boolean>; ocspResponse?: OcspResponder },
): Promise<WebListener[]> {
  const acme = config.tls.acme;
  const policy = configuredPolicy(config);
  const https = new Map<string, { address: string; port: number; handlers: WebHandler[]; alpn: boolean }>();
  const httpsAt = (b: { address: string; port: number }) => {
    const key = `${b.address}|${b.port}`;
    let entry = https.get(key);
    if (!entry) https.set(key, (entry = { ...b, handlers: [], alpn: false }));
    return entry;
  };
  if (acme && acme.challenge !== "http-01") httpsAt(acme.tlsAlpn).alpn = true;
  if (policy) httpsAt(config.mtaSts!.listen).handlers.push(mtaStsPolicyHandler({ text: formatPolicy(policy), isLocalDomain: o.isLocalDomain }));
  const web: WebListener[] = [];
  try {
    if (acme && acme.challenge !== "tls-alpn-01") {
      web.push(await startHttpListener({ ...acme.http, handlers: [acmeHttp01Handler(o.challenges)], log: o.log }));
    }
    for (const h of https.values()) {
      web.push(await startHttpsListener({ address: h.address, port: h.port, handlers: h.handlers, log: o.log, tls: o.tls, ...(o.ocspResponse ? { ocspResponse: o.ocspResponse } : {}), ...(h.alpn ? { alpn: acmeTlsAlpnResponder(o.challenges) } : {}) }));
    }
  } catch (err) {
    for (const w of web) await w.close();
    throw err;
  }
  return web;
}

function logNameservers(resolver: Resolver, log: Logger): void {
  const report = (resolver as Partial<ClosableResolver>).nameservers?.();
  if (!report) return;
  if (report.fallback) log.warn({ dns: report }, `no nameserver in ${report.source}: asking ${report.servers.join(", ")} (the C library's default)`);
  else log.info({ dns: report }, `DNS servers from ${report.source}: ${report.servers.join(", ")}`);
}

/**
 * RFC 5321 §4.5.1 makes postmaster@ of every local domain deliverable; when
 * it ends in the fallback Maildir (no user, alias or `postmaster:` setting
 * covers it), nobody reads it: say so once at start-up.
 */
async function warnUnreadPostmaster(config: Config, accounts: AccountStore, log: Logger): Promise<void> {
  const unread: string[] = [];
  try {
    for (const domain of await accounts.listDomains()) {
      const address = `postmaster@${domain}`;
      const r = await accounts.resolveRecipient(address);
      const fallback = r.kind === "local" && r.targets.length === 1 && r.targets[0].type === "mailbox" && r.targets[0].address === address;
      if (fallback && !(await accounts.getUser(address))) unread.push(domain);
    }
  } catch (err) {
    // An unreadable accounts file is reported where it is used (RCPT, delivery); it does not stop start-up here.
    log.error({ err: (err as Error).message }, "accounts unreadable: cannot check where postmaster@ mail goes");
    return;
  }
  if (unread.length === 0) return;
  log.warn(
    { domains: unread, postmaster: config.postmaster ?? null },
    config.postmaster === undefined
      ? "postmaster is not set: mail to postmaster@ of these domains lands in a Maildir no user can log into (and abuse@ is refused); set postmaster: to an address someone reads"
      : `postmaster: ${config.postmaster} is no user or alias here, so mail to postmaster@ of these domains lands in a Maildir no user can log into`,
  );
}

/** A user's own quota, else the configured default (0 = unlimited). */
function userQuota(accounts: AccountStore, fallback: number): (address: string) => Promise<number | undefined> {
  return async (address) => (await accounts.getUser(address))?.quota ?? (fallback > 0 ? fallback : undefined);
}
