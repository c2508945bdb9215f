/**
 * `petrel domain|user|alias …`: manage the account store from a shell. Thin: it parses arguments,
 * reads passwords, calls the AccountStore (accounts.json, or with `storage.kind: postgres` the
 * cluster's database, whose nodes hear of the change at once) and prints. The command is a function of
 * (args, io) returning an exit code, so tests run it in-process.
 *
 * Exit codes: 0 done; 1 refused (unknown domain, duplicate user, alias loop, …); 2 usage error
 * (bad arguments, password mismatch); 75 the cluster's database cannot be reached (try again);
 * 78 the configuration file is wrong; 130 interrupted at a password prompt.
 *
 * Passwords are never taken from argv (ps and shell history would see them): they are read from
 * stdin's first line when stdin is not a terminal, else prompted for twice without echo.
 */
import { promptHidden, readFirstLine } from "./prompt.ts";
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import { ConfigError } from "../config/config-error.ts";
import { formatSize, parseSize, SIZE_ALLOWED } from "../config/units.ts";
import { domainOf, normalizeMailbox } from "../mail/address.ts";
import type { Config } from "../config/schema.ts";
import { AccountError, type AccountStore } from "../accounts/account-store.ts";
import { FileAccountStore } from "../accounts/file-account-store.ts";
import { PostgresAccountStore } from "../storage/postgres/account-store.ts";
import { openDatabase } from "../storage/postgres/open-database.ts";
import type { PostgresPool } from "../storage/postgres/postgres-pool.ts";
import { checkPassword, type PasswordCheck } from "../accounts/password-policy.ts";

export interface CommandIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

export const ACCOUNTS_USAGE = `Account commands (each takes --config FILE; list commands take --json):
  domain add DOMAIN                 make DOMAIN a local domain
  domain remove DOMAIN [--force]    remove it (--force: with its users and aliases)
  domain list                       local domains
  user add ADDRESS [--quota SIZE] [--admin]
                                    add a user (--admin: who may log in to the admin API); the
                                    password is read from stdin or prompted for
  user admin ADDRESS on|off         let a user log in to the admin API, or no longer
  user passwd ADDRESS               change a user's password (stdin or prompt)
  user remove ADDRESS               remove a user
  user list [DOMAIN]                users (of DOMAIN)
  alias add SOURCE TARGET...        SOURCE (local@domain, or @domain for a catch-all) → TARGETs
  alias remove SOURCE [TARGET]      remove one target, or the whole alias
  alias list                        aliases
`;

class UsageError extends Error {}
class Interrupted extends Error {}

const COMMON = {
  config: { type: "string", short: "c" },
  json: { type: "boolean" },
  force: { type: "boolean" },
  quota: { type: "string" },
  admin: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

interface Parsed {
  noun: string;
  verb: string;
  positionals: string[];
  config?: string;
  json: boolean;
  force: boolean;
  quota?: string;
  admin: boolean;
  help: boolean;
}

const VERBS: Record<string, Record<string, { min: number; max: number; options: readonly string[] }>> = {
  domain: {
    add: { min: 1, max: 1, options: [] },
    remove: { min: 1, max: 1, options: ["force"] },
    list: { min: 0, max: 0, options: ["json"] },
  },
  user: {
    add: { min: 1, max: 1, options: ["quota", "admin"] },
    remove: { min: 1, max: 1, options: [] },
    passwd: { min: 1, max: 1, options: [] },
    admin: { min: 2, max: 2, options: [] },
    list: { min: 0, max: 1, options: ["json"] },
  },
  alias: {
    add: { min: 2, max: Infinity, options: [] },
    remove: { min: 1, max: 2, options: [] },
    list: { min: 0, max: 0, options: ["json"] },
  },
};

function parse(args: readonly string[]): Parsed {
  const [noun, ...rest] = args;
  const verbs = VERBS[noun];
  if (!verbs) throw new UsageError(`unknown command '${noun}'`);
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: [...rest], options: COMMON, strict: true, allowPositionals: true }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const [verb, ...params] = positionals;
  if (values.help) return { noun, verb: verb ?? "", positionals: params, json: false, force: false, admin: false, help: true };
  if (verb === undefined) throw new UsageError(`${noun}: which one? ${Object.keys(verbs).join(", ")}`);
  const spec = verbs[verb];
  if (!spec) throw new UsageError(`${noun}: unknown subcommand '${verb}' (expected ${Object.keys(verbs).join(", ")})`);
  if (params.length < spec.min) throw new UsageError(`${noun} ${verb}: missing argument`);
  if (params.length > spec.max) throw new UsageError(`${noun} ${verb}: unexpected argument '${params[spec.max]}'`);
  for (const opt of ["json", "force", "quota", "admin"] as const) {
    if (values[opt] !== undefined && !spec.options.includes(opt)) throw new UsageError(`${noun} ${verb}: --${opt} does not apply here`);
  }
  return {
    noun,
    verb,
    positionals: params,
    config: values.config,
    json: values.json ?? false,
    force: values.force ?? false,
    quota: values.quota,
    admin: values.admin ?? false,
    help: false,
  };
}

/** Run `petrel <domain|user|alias> …`; `args` starts with the noun. Resolves the exit code. */
export async function accountsCommand(args: readonly string[], io: CommandIo): Promise<number> {
  let p: Parsed;
  try {
    p = parse(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`petrel: ${err.message}\n\n${ACCOUNTS_USAGE}`);
    return 2;
  }
  if (p.help) {
    io.stdout.write(ACCOUNTS_USAGE);
    return 0;
  }

  let config: Config;
  try {
    config = await loadConfig(p.config, { checkFiles: false });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr.write(`petrel: the configuration has errors; nothing was changed.\n${err.message}\n`);
      return 78;
    }
    throw err;
  }
  let database: PostgresPool | null = null;
  let store: AccountStore;
  if (config.storage.kind === "postgres") {
    try {
      database = await openDatabase(config.storage, { info: () => {}, error: () => {} });
      store = await PostgresAccountStore.fromConfig(config, database, { listen: false });
    } catch (err) {
      await database?.end();
      io.stderr.write(`petrel: ${(err as Error).message}; nothing was changed\n`);
      return 75;
    }
  } else {
    store = FileAccountStore.fromConfig(config);
  }

  try {
    return await run(p, store, config, io);
  } catch (err) {
    if (err instanceof AccountError) {
      const message = err.code === "domain-in-use" ? err.message.replace(/, or force the removal.*$/, ", or add --force to remove them with the domain") : err.message;
      io.stderr.write(`petrel: ${message}\n`);
      return 1;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`petrel: ${err.message}\n`);
      return 2;
    }
    if (err instanceof Interrupted) {
      io.stderr.write("petrel: interrupted; nothing was changed\n");
      return 130;
    }
    throw err;
  } finally {
    await database?.end();
  }
}

async function run(p: Parsed, store: AccountStore, config: Config, io: CommandIo): Promise<number> {
  const out = (line: string) => io.stdout.write(`${line}\n`);
  const [a, b] = p.positionals;
  const configDomains = new Set(config.domains);
  switch (`${p.noun} ${p.verb}`) {
    case "domain add":
      await store.addDomain(a);
      out(`added domain ${a.toLowerCase()}`);
      return 0;
    case "domain remove":
      await store.removeDomain(a, { force: p.force });
      out(`removed domain ${a.toLowerCase()}`);
      return 0;
    case "domain list": {
      const domains = await store.listDomains();
      const source = (d: string) => (configDomains.has(d) ? "config" : "store");
      if (p.json) out(JSON.stringify(domains.map((d) => ({ domain: d, source: source(d) }))));
      else for (const d of domains) out(source(d) === "config" ? `${d}  (config file)` : d);
      return 0;
    }
    case "user add": {
      let quota: number | undefined;
      if (p.quota !== undefined) {
        quota = parseSize(p.quota);
        if (quota === undefined) throw new UsageError(`--quota '${p.quota}': ${SIZE_ALLOWED}`);
      }
      // Check what can be checked before asking for a password.
      await precheckAddress(store, a, "new");
      const password = await readNewPassword(io, (pw) => checkPassword(pw, config.passwords, a));
      await store.addUser(a, password, { quota, ...(p.admin ? { admin: true } : {}) });
      out(`added user ${a.trim().toLowerCase()}${p.admin ? " (administrator)" : ""}`);
      return 0;
    }
    case "user admin": {
      if (b !== "on" && b !== "off") throw new UsageError(`user admin: expected on or off, got '${b}'`);
      await store.setAdmin(a, b === "on");
      out(`${a.trim().toLowerCase()} ${b === "on" ? "may now log in to the admin API" : "may no longer log in to the admin API"}`);
      return 0;
    }
    case "user passwd": {
      await precheckAddress(store, a, "existing");
      const password = await readNewPassword(io, (pw) => checkPassword(pw, config.passwords, a));
      await store.setPassword(a, password);
      out(`changed the password of ${a.trim().toLowerCase()}`);
      return 0;
    }
    case "user remove": {
      await store.removeUser(a);
      const address = a.trim().toLowerCase();
      out(`removed user ${address}`);
      const pointing = (await store.listAliases()).filter((al) => al.targets.some((t) => t.toLowerCase() === address));
      if (pointing.length > 0) {
        io.stderr.write(`petrel: note: still aliased to ${address}: ${pointing.map((al) => al.source).join(", ")} (petrel alias remove SOURCE ${address})\n`);
      }
      return 0;
    }
    case "user list": {
      const users = await store.listUsers(a);
      if (p.json) out(JSON.stringify(users));
      else {
        for (const u of users) {
          const extra = [u.quota !== undefined ? `quota ${formatSize(u.quota)}` : "", u.admin ? "admin" : "", u.source === "config" ? "(config file)" : ""];
          out([u.address, ...extra.filter(Boolean)].join("  "));
        }
      }
      return 0;
    }
    case "alias add": {
      const targets = p.positionals.slice(1);
      await store.addAlias(a, targets);
      out(`added alias ${a.trim().toLowerCase()} → ${targets.join(", ")}`);
      return 0;
    }
    case "alias remove":
      await store.removeAlias(a, b);
      out(b === undefined ? `removed alias ${a.trim().toLowerCase()}` : `removed ${b} from alias ${a.trim().toLowerCase()}`);
      return 0;
    case "alias list": {
      const aliases = await store.listAliases();
      if (p.json) out(JSON.stringify(aliases));
      else for (const al of aliases) out(`${al.source} → ${al.targets.join(", ")}`);
      return 0;
    }
  }
  throw new UsageError(`${p.noun} ${p.verb}: not implemented`);
}

/** Refuse early (before a password prompt) what the store would refuse anyway. */
async function precheckAddress(store: AccountStore, input: string, want: "new" | "existing"): Promise<void> {
  const address = normalizeMailbox(input.trim())?.toLowerCase();
  if (address === undefined) throw new AccountError("invalid-address", `invalid address '${input}': expected local@domain, such as alice@example.org`);
  const user = await store.getUser(address);
  if (want === "existing") {
    if (!user) throw new AccountError("not-found", `no such user: ${address}`);
    if (user.source === "config") throw new AccountError("config-defined", `user ${user.address} is defined in the config file (users:); change it there`);
    return;
  }
  const domain = domainOf(address);
  if (!(await store.isLocalDomain(domain))) {
    throw new AccountError("unknown-domain", `domain ${domain} is not a local domain; add it with: petrel domain add ${domain}`);
  }
  if (user) throw new AccountError("exists", `user ${user.address} already exists${user.source === "config" ? " (defined in the config file)" : ""}`);
}

// ---------------------------------------------------------------------------------------------
// Passwords

/** A new password from stdin or the terminal, checked by `policy` before it is asked for again. */
async function readNewPassword(io: CommandIo, policy: (password: string) => PasswordCheck): Promise<string> {
  const refuse = (password: string) => {
    const check = policy(password);
    if (!check.ok) throw new AccountError("invalid-password", `password refused: ${check.reason}; nothing was changed`);
  };
  if (!io.stdin.isTTY) {
    const line = await readFirstLine(io.stdin);
    if (line === "") throw new UsageError("empty password refused (give it as the first line of stdin)");
    refuse(line);
    return line;
  }
  const first = await promptHidden(io, "Password: ", () => new Interrupted());
  if (first === "") throw new UsageError("empty password refused");
  refuse(first);
  const second = await promptHidden(io, "Retype password: ", () => new Interrupted());
  if (first !== second) throw new UsageError("the passwords do not match; nothing was changed");
  return first;
}


