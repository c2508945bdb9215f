/**
 * TLS certificates for the listeners: which certificate a connection gets
 * (SNI), with what protocol floor, and replacing certificates on disk without
 * a restart.
 *
 * Choice of certificate for a connection, given the server name the client
 * sent (SNI), in order: an exact `tls.sni` name; a wildcard "*.example.com"
 * (exactly one label: a.example.com, not a.b.example.com nor example.com);
 * the listener's own certificate; the default `tls.cert`.
 *
 * Reload: the directories holding the certificate and key files are watched
 * (a directory watch sees an ACME client's write-then-rename, and the symlink
 * swap of Kubernetes secrets). When files change, the new pair is loaded and
 * validated (PEM parses, key matches certificate, OpenSSL accepts it) and then
 * replaces the old one in a single assignment; connections already open keep
 * their certificate, new ones get the new one. An invalid new pair keeps the
 * old one in service and is reported (event "reloadError"); a later change is
 * tried again. A slow poll backs up the watch for filesystems where watching
 * does not work.
 */
import { EventEmitter } from "node:events";
import { readFileSync, watch } from "node:fs";
import type { FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import * as tls from "node:tls";
import type { Config, TlsMinVersion } from "../config/schema.ts";
import { ConfigError, makeIssue } from "../config/config-error.ts";
import { configIssue, formatPath, startupConfigError } from "../config/load.ts";
import { INTERMEDIATE_CIPHERS, OPPORTUNISTIC_CIPHERS } from "../config/defaults.ts";
import { ensureSelfSigned } from "./tls-certificates.ts";
import { effectiveCiphers } from "../config/cipher-policy.ts";
import { SERVER_SECURE_OPTIONS, type TlsRole } from "./tls-policy.ts";
import { TlsCertificateError, buildContext, type CertKeyPaths, type CertificateInfo, type Loaded } from "./tls-certificate-pair.ts";

export interface SniEntry extends CertKeyPaths {
  /** Server names, lower-case; "*.example.com" for a one-label wildcard. */
  names: string[];
}

export interface TlsContextProviderOptions {
  /** The default certificate and key. */
  default: CertKeyPaths;
  sni?: readonly SniEntry[];
  /** Protocol floor; never below TLSv1.2 (default). */
  minVersion?: TlsMinVersion;
  /** Cipher string per listener role (tls-policy.ts); defaults: broad for mx, Mozilla intermediate otherwise. */
  ciphers?: Partial<Record<TlsRole, string>>;
  /** Watch the files and reload on change (default true). */
  watch?: boolean;
  /** Wait this long after the last change before reloading, so that a cert and key replaced
   * one after the other load as one pair (default 100 ms). */
  debounceMs?: number;
  /** Also re-read the files this often, for filesystems where watching fails (default 60 s; 0 = never). */
  pollIntervalMs?: number;
  onReload?: (info: CertificateInfo) => void;
  onError?: (error: TlsCertificateError) => void;
}

/** One configured pair; `current` is swapped whole on reload. */
interface Pair {
  paths: CertKeyPaths;
  current: Loaded;
  /** Contents last reported as invalid, not to report the same files twice. */
  failed?: { certPem: Buffer; keyPem: Buffer };
}

interface Attached {
  server: tls.Server;
  pair: Pair;
  role: TlsRole;
}

type Events = {
  reload: [info: CertificateInfo];
  reloadError: [error: TlsCertificateError];
};

const FLOOR: TlsMinVersion = "TLSv1.2";

export class TlsContextProvider extends EventEmitter<Events> {
  readonly minVersion: TlsMinVersion;
  private readonly ciphers: Record<TlsRole, string>;
  private readonly pairs = new Map<string, Pair>();
  private readonly defaultPair: Pair;
  private readonly exact = new Map<string, Pair>();
  /** "*.example.com" is stored under "example.com". */
  private readonly wildcard = new Map<string, Pair>();
  private readonly attached = new Set<Attached>();
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly watching: boolean;
  private readonly debounceMs: number;
  private readonly pendingDirs = new Set<string>();
  private debounceTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  /** Loads every pair now; throws TlsCertificateError if one is unusable. */
  constructor(options: TlsContextProviderOptions) {
    super();
    this.minVersion = options.minVersion === "TLSv1.3" ? "TLSv1.3" : FLOOR;
    this.ciphers = {
      mx: effectiveCiphers(options.ciphers?.mx ?? OPPORTUNISTIC_CIPHERS),
      submission: effectiveCiphers(options.ciphers?.submission ?? INTERMEDIATE_CIPHERS),
      submissions: effectiveCiphers(options.ciphers?.submissions ?? INTERMEDIATE_CIPHERS),
    };
    this.watching = options.watch ?? true;
    this.debounceMs = options.debounceMs ?? 100;
    if (options.onReload) this.on("reload", options.onReload);
    if (options.onError) this.on("reloadError", options.onError);
    this.defaultPair = this.pairFor(options.default);
    for (const entry of options.sni ?? []) {
      const pair = this.pairFor(entry);
      for (const raw of entry.names) {
        const name = normalizeServerName(raw);
        const table = name.startsWith("*.") ? this.wildcard : this.exact;
        const key = name.startsWith("*.") ? name.slice(2) : name;
        if (!table.has(key)) table.set(key, pair); // the first entry naming it wins
      }
    }
    const poll = options.pollIntervalMs ?? 60_000;
    if (this.watching && poll > 0) {
      this.pollTimer = setInterval(() => void this.enqueue([...this.pairs.values()], false), poll);
      this.pollTimer.unref();
    }
  }

  /**
   * The provider for a parsed configuration: `tls.cert`/`tls.key`, or a
   * self-signed certificate in <dataDir>/tls/ when they are absent. A pair
   * that cannot be loaded is reported as a ConfigError naming its key.
   */
  static async fromConfig(
    config: Config,
    options: Omit<TlsContextProviderOptions, "default" | "sni" | "minVersion" | "ciphers"> & {
      source?: string;
      /** The default pair when the configuration names none (an ACME certificate); else a self-signed one. */
      fallback?: CertKeyPaths;
    } = {},
  ): Promise<TlsContextProvider> {
    const { tls: t } = config;
    // Reported like every other configuration error: file, line, key (with `source`, without lines).
    const problem = (path: (string | number)[], err: TlsCertificateError): ConfigError => {
      const allowed = `expected a usable certificate and key: ${err.reason}`;
      return options.source === undefined
        ? startupConfigError(config, [configIssue(config, path, err.certPath, allowed)])
        : new ConfigError(options.source, [makeIssue(options.source, formatPath(path), err.certPath, allowed)]);
    };
    const { fallback, ...rest } = options;
    let def: CertKeyPaths;
    if (t.cert !== undefined && t.key !== undefined) def = { cert: t.cert, key: t.key };
    else if (fallback) def = fallback;
    else def = await ensureSelfSigned(config.dataDir, config.hostname).then((p) => ({ cert: p.certPath, key: p.keyPath }));
    const provider = (() => {
      try {
        return new TlsContextProvider({ ...rest, default: def, sni: t.sni, minVersion: t.minVersion, ciphers: t.ciphers });
      } catch (err) {
        if (!(err instanceof TlsCertificateError)) throw err;
        const i = t.sni.findIndex((s) => s.cert === err.certPath && s.key === err.keyPath);
        throw problem(i >= 0 ? ["tls", "sni", i, "cert"] : ["tls", "cert"], err);
      }
    })();
    // Per-listener certificates are loaded now, so that a bad one stops start-up.
    config.listeners.forEach((l, i) => {
      if (!l.tls) return;
      try {
        provider.serverOptions(l.tls);
      } catch (err) {
        provider.close();
        if (!(err instanceof TlsCertificateError)) throw err;
        throw problem(["listeners", i, "tls", "cert"], err);
      }
    });
    return provider;
  }

  /**
   * Options for `tls.createServer(...)` or `new tls.TLSSocket(socket, { isServer: true, ...})`
   * (STARTTLS). `listenerTls` replaces the default certificate for that listener. For a
   * TLSSocket, call this for each connection, so it starts from the current certificate.
   * A `tls.Server` keeps its default certificate: pass it to `attach()` so that reloads
   * reach clients that send no server name. `role` chooses the cipher policy (default: the
   * strict one of `submissions`).
   */
  serverOptions(listenerTls?: CertKeyPaths, role: TlsRole = "submissions"): tls.TlsOptions {
    const pair = listenerTls ? this.pairFor(listenerTls) : this.defaultPair;
    return {
      ...this.contextOptions(pair.current, role),
      secureContext: this.contextOf(pair.current, role),
      SNICallback: (servername, cb) => {
        try {
          cb(null, this.contextFor(servername, pair, role));
        } catch (err) {
          cb(err as Error, undefined);
        }
      },
    };
  }

  /**
   * A `tls.Server` with `serverOptions(listenerTls, role)`, attached for reloads. It need not
   * listen: passed as `server` to `new tls.TLSSocket(...)`, it is where Node asks for an OCSP
   * staple ("OCSPRequest") for the certificate of a connection that sent no server name.
   */
  createServer(listenerTls?: CertKeyPaths, onSecureConnection?: (socket: tls.TLSSocket) => void, role: TlsRole = "submissions"): tls.Server {
    const server = tls.createServer(this.serverOptions(listenerTls, role), onSecureConnection);
    this.attach(server, listenerTls, role);
    return server;
  }

  /** Keep `server`'s default certificate current across reloads (until the server closes). */
  attach(server: tls.Server, listenerTls?: CertKeyPaths, role: TlsRole = "submissions"): void {
    const entry: Attached = { server, pair: listenerTls ? this.pairFor(listenerTls) : this.defaultPair, role };
    this.attached.add(entry);
    server.once("close", () => this.attached.delete(entry));
  }

  /**
   * The SecureContext for a server name: exact SNI name, then one-label wildcard, then
   * `fallback` (a listener's own pair), then the default; with `role`'s cipher policy.
   */
  contextFor(servername: string | undefined, fallback?: CertKeyPaths | Pair, role: TlsRole = "submissions"): tls.SecureContext {
    return this.contextOf(this.pairForName(servername, fallback).current, role);
  }

  /** The PEM chain (leaf first) that a connection for `servername` gets now. */
  chainFor(servername?: string, listenerTls?: CertKeyPaths): Buffer {
    return this.pairForName(servername, listenerTls).current.certPem;
  }

  /** Every loaded chain (PEM, leaf first), for OCSP stapling. */
  chains(): Buffer[] {
    return [...this.pairs.values()].map((p) => p.current.certPem);
  }

  /** `SNICallback`-compatible: `tls.createServer({ SNICallback: provider.sniCallback })`. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    cb(null, this.contextFor(servername));
  };

  /** The certificate that a connection for `servername` gets now. */
  certificateFor(servername?: string, listenerTls?: CertKeyPaths): CertificateInfo {
    return this.pairForName(servername, listenerTls).current.info;
  }

  /** Every loaded certificate (for logs, expiry checks, the admin API). */
  certificates(): CertificateInfo[] {
    return [...this.pairs.values()].map((p) => p.current.info);
  }

  /**
   * Re-read every pair now (e.g. on SIGHUP); resolves when done. Changed valid pairs
   * are swapped in ("reload"), invalid ones reported ("reloadError").
   */
  reload(): Promise<void> {
    return this.enqueue([...this.pairs.values()], false);
  }

  /** Stop watching. Loaded contexts stay usable. */
  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    clearTimeout(this.debounceTimer);
    clearInterval(this.pollTimer);
    this.attached.clear();
  }

  // -------------------------------------------------------------------------

  /** Options every server context of `role` is made with. */
  private contextOptions(loaded: Loaded, role: TlsRole): tls.SecureContextOptions {
    return {
      cert: loaded.certPem,
      key: loaded.keyPem,
      minVersion: this.minVersion,
      ciphers: this.ciphers[role],
      secureOptions: SERVER_SECURE_OPTIONS,
      honorCipherOrder: true,
    };
  }

  private contextOf(loaded: Loaded, role: TlsRole): tls.SecureContext {
    const ciphers = this.ciphers[role];
    let context = loaded.contexts.get(ciphers);
    if (!context) {
      context = tls.createSecureContext(this.contextOptions(loaded, role));
      loaded.contexts.set(ciphers, context);
    }
    return context;
  }

  private pairForName(servername: string | undefined, fallback?: CertKeyPaths | Pair): Pair {
    if (servername) {
      const name = normalizeServerName(servername);
      const hit = this.exact.get(name);
      if (hit) return hit;
      const dot = name.indexOf(".");
      if (dot > 0) {
        const wild = this.wildcard.get(name.slice(dot + 1));
        if (wild) return wild;
      }
    }
    if (fallback) return "current" in fallback ? fallback : this.pairFor(fallback);
    return this.defaultPair;
  }

  private pairFor(paths: CertKeyPaths): Pair {
    const abs = { cert: resolve(paths.cert), key: resolve(paths.key) };
    const id = `${abs.cert}\0${abs.key}`;
    let pair = this.pairs.get(id);
    if (pair) return pair;
    let certPem: Buffer;
    let keyPem: Buffer;
    try {
      certPem = readFileSync(abs.cert);
      keyPem = readFileSync(abs.key);
    } catch (err) {
      throw new TlsCertificateError(abs, (err as Error).message, { cause: err });
    }
    pair = { paths: abs, current: buildContext(abs, certPem, keyPem, this.minVersion) };
    this.pairs.set(id, pair);
    if (this.watching && !this.closed) {
      this.watchDir(dirname(abs.cert));
      this.watchDir(dirname(abs.key));
    }
    return pair;
  }

  private watchDir(dir: string): void {
    if (this.watchers.has(dir)) return;
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, { persistent: false }, () => this.changed(dir));
    } catch (err) {
      this.emit("reloadError", new TlsCertificateError({ cert: dir, key: dir }, `cannot watch ${dir}: ${(err as Error).message}`));
      return;
    }
    watcher.on("error", (err) => {
      this.emit("reloadError", new TlsCertificateError({ cert: dir, key: dir }, `watching ${dir} failed: ${err.message}`));
      watcher.close();
      this.watchers.delete(dir);
    });
    this.watchers.set(dir, watcher);
  }

  private changed(dir: string): void {
    if (this.closed) return;
    this.pendingDirs.add(dir);
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      const dirs = new Set(this.pendingDirs);
      this.pendingDirs.clear();
      const affected = [...this.pairs.values()].filter(
        (p) => dirs.has(dirname(p.paths.cert)) || dirs.has(dirname(p.paths.key)),
      );
      void this.enqueue(affected, true);
    }, this.debounceMs);
  }

  /** Checks run one after another, so two reloads never interleave. */
  private enqueue(pairs: Pair[], fromWatch: boolean): Promise<void> {
    this.chain = this.chain.then(async () => {
      for (const pair of pairs) await this.check(pair, fromWatch);
    });
    return this.chain;
  }

  private async check(pair: Pair, fromWatch: boolean): Promise<void> {
    if (this.closed) return;
    let certPem: Buffer;
    let keyPem: Buffer;
    try {
      [certPem, keyPem] = await Promise.all([readFile(pair.paths.cert), readFile(pair.paths.key)]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Mid-replacement a file may be briefly absent; the rename that completes it is another event.
      if (code === "ENOENT" && fromWatch) return;
      this.emit("reloadError", new TlsCertificateError(pair.paths, (err as Error).message, { cause: err }));
      return;
    }
    if (certPem.equals(pair.current.certPem) && keyPem.equals(pair.current.keyPem)) {
      pair.failed = undefined;
      return;
    }
    if (pair.failed && certPem.equals(pair.failed.certPem) && keyPem.equals(pair.failed.keyPem)) return;
    let loaded: Loaded;
    try {
      loaded = buildContext(pair.paths, certPem, keyPem, this.minVersion);
    } catch (err) {
      pair.failed = { certPem, keyPem };
      this.emit("reloadError", err as TlsCertificateError);
      return;
    }
    pair.failed = undefined;
    pair.current = loaded; // the switch: one assignment
    for (const a of this.attached) {
      if (a.pair !== pair) continue;
      a.server.setSecureContext(this.contextOptions(loaded, a.role));
    }
    this.emit("reload", loaded.info);
  }
}

/** Lower-case, without a trailing dot. */
function normalizeServerName(name: string): string {
  const n = name.trim().toLowerCase();
  return n.endsWith(".") ? n.slice(0, -1) : n;
}
