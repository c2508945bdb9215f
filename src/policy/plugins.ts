import { basename } from "node:path";
import { pathToFileURL } from "node:url";
import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import type { Check } from "./check.ts";
import type { CheckFactory, PluginContext, PluginResolver } from "./plugin-api.ts";

/**
 * Loading plugins: modules named in the configuration (`plugins:`) whose
 * default export is a CheckFactory (plugin-api.ts). JavaScript, or
 * TypeScript run through Node's type stripping (erasable syntax only: no
 * enums, namespaces or parameter properties; and not from node_modules).
 *
 * Everything that can go wrong while loading — the module cannot be
 * imported, exports no factory, the factory throws or gives something that
 * is not a Check, two checks share a name — is a PluginLoadError naming the
 * entry, which start-up reports as a configuration error. What goes wrong
 * later, at a stage, is the pipeline runner's to answer (451 4.3.0).
 */

export interface PluginEntry {
  /** Absolute path of the module. */
  readonly path: string;
  /** Passed to the factory as given in the configuration. */
  readonly options?: unknown;
}

export interface PluginHost {
  readonly log: Logger;
  readonly resolver: PluginResolver;
  readonly clock: Clock;
  readonly hostname: string;
  /** Names already taken by the built-in checks. */
  readonly reserved?: readonly string[];
  /** Longest a factory may take, ms (default 30 s). */
  readonly loadTimeout?: number;
}

export class PluginLoadError extends Error {
  override readonly name = "PluginLoadError";
  /** Index of the entry in `plugins:`. */
  readonly index: number;
  readonly path: string;
  /** What went wrong, for "plugins[i].path: got …; <reason>". */
  readonly reason: string;
  constructor(index: number, path: string, reason: string) {
    super(`plugin ${path}: ${reason}`);
    this.index = index;
    this.path = path;
    this.reason = reason;
  }
}

/** A check name: lower case letters, digits and . _ : - (it appears in logs and A-R fields). */
const CHECK_NAME = /^[a-z0-9][a-z0-9._:-]{0,63}$/;

export async function loadPlugins(entries: readonly PluginEntry[], host: PluginHost): Promise<Check[]> {
  const taken = new Set(host.reserved ?? []);
  const checks: Check[] = [];
  for (const [index, entry] of entries.entries()) {
    const check = await loadPlugin(index, entry, host);
    if (taken.has(check.name)) {
      throw new PluginLoadError(index, entry.path, `its check is named "${check.name}", which another check already has: check names must be unique`);
    }
    taken.add(check.name);
    checks.push(check);
  }
  return checks;
}

async function loadPlugin(index: number, entry: PluginEntry, host: PluginHost): Promise<Check> {
  const fail = (reason: string) => new PluginLoadError(index, entry.path, reason);
  let module: { default?: unknown };
  try {
    module = (await import(pathToFileURL(entry.path).href)) as { default?: unknown };
  } catch (err) {
    throw fail(`cannot be loaded: ${describe(err)}`);
  }
  const factory = module.default;
  if (typeof factory !== "function") {
    throw fail("has no default export that is a function: a plugin module must `export default` a CheckFactory (README, Plugins)");
  }
  let made: unknown;
  try {
    made = await withinTime(Promise.resolve().then(() => (factory as CheckFactory)(contextFor(entry, host), entry.options)), host);
  } catch (err) {
    throw fail(`its factory failed: ${describe(err)}`);
  }
  const problem = notACheck(made);
  if (problem) throw fail(`its factory did not return a Check: ${problem}`);
  const check = made as Check;
  // The runner reads these once; a plugin cannot change its name or dependencies later.
  const open = check.open.bind(check);
  return Object.freeze({ name: check.name, ...(check.after ? { after: Object.freeze([...check.after]) } : {}), open });
}

/** The narrow context: bound functions, not the objects behind them (no resolver.close, no server state). */
function contextFor(entry: PluginEntry, host: PluginHost): PluginContext {
  const { resolver, clock } = host;
  return Object.freeze({
    log: host.log.child({ plugin: basename(entry.path) }),
    resolver: Object.freeze({
      resolveMx: (domain: string) => resolver.resolveMx(domain),
      resolveAddresses: (name: string) => resolver.resolveAddresses(name),
      resolveTxt: (name: string) => resolver.resolveTxt(name),
      resolveRecords: ((name, type) => resolver.resolveRecords(name, type)) as PluginResolver["resolveRecords"],
    }),
    clock: Object.freeze({
      now: () => clock.now(),
      schedule: (fn: () => void, ms: number) => clock.schedule(fn, ms),
      cancel: (handle: unknown) => clock.cancel(handle),
    }),
    hostname: host.hostname,
  });
}

function withinTime<T>(p: Promise<T>, host: PluginHost): Promise<T> {
  const ms = host.loadTimeout ?? 30_000;
  return new Promise<T>((resolve, reject) => {
    const timer = host.clock.schedule(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
    p.then(
      (v) => {
        host.clock.cancel(timer);
        resolve(v);
      },
      (err: unknown) => {
        host.clock.cancel(timer);
        reject(err);
      },
    );
  });
}

function notACheck(v: unknown): string | undefined {
  if (typeof v !== "object" || v === null) return `got ${v === null ? "null" : typeof v}`;
  const c = v as Partial<Record<keyof Check, unknown>>;
  if (typeof c.name !== "string" || !CHECK_NAME.test(c.name)) {
    return `its name must be a string of lower-case letters, digits and . _ : - (got ${JSON.stringify(c.name) ?? "nothing"})`;
  }
  if (typeof c.open !== "function") return "it has no open(client) method";
  if (c.after !== undefined && !(Array.isArray(c.after) && c.after.every((a) => typeof a === "string"))) {
    return "its `after` must be a list of check names";
  }
  return undefined;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  const first = err.message.split("\n")[0];
  if (code === "ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX") {
    return `${first} (Node runs TypeScript by stripping types: only erasable syntax, no enums, namespaces or parameter properties)`;
  }
  if (code === "ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING") {
    return `${first} (Node does not strip types under node_modules: keep the .ts file elsewhere, or compile it to JavaScript)`;
  }
  return code && !first.includes(code) ? `${first} (${code})` : first;
}
