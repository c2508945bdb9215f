/**
 * Recipient resolution: where mail for an address goes, as a pure function over a snapshot of the
 * accounts (no I/O), so every rule is unit-tested on its own.
 *
 * The rules, in order, for "local@domain":
 *  1. The domain is compared case-insensitively (and in A-label form); not one of ours → "not-local".
 *     Address literals ("[192.0.2.1]") are never local.
 *  2. The local part is compared case-insensitively (as Postfix does in practice).
 *  3. An exact alias wins over a user of the same address (this is how "keep a copy and forward"
 *     is written: `alice@d → alice@d, alice@elsewhere`); then the exact user.
 *  4. Sub-addressing: "user+tag" that is neither an alias nor a user is looked up as "user"
 *     (the separator is configurable, default "+"; a string such as "+-" allows either; the part
 *     before the FIRST separator character is used; an empty base is not sub-addressing).
 *  5. postmaster@<any local domain> always resolves (RFC 5321 §4.5.1): to its alias if one is
 *     defined (and yields something), else to the user, else to the `postmaster` address when one
 *     is configured (like Postfix's "postmaster: root" alias entry, for every local domain), else
 *     to the mailbox "postmaster@domain" even though no such user exists. abuse@ (RFC 2142 §2)
 *     follows the same rule when `postmaster` is configured (and is unknown when it is not). Both
 *     are checked before the catch-all.
 *  6. The catch-all alias "@domain" is used only when nothing above matched.
 *
 * Alias targets are expanded recursively with the same rules: a target in a local domain is
 * resolved again (it may be a user, another alias, a sub-address or hit a catch-all); a target in
 * any other domain is a "forward". Expansion is bounded: at most MAX_ALIAS_DEPTH nested aliases,
 * and an alias met again on its own expansion path is a loop — except that an address which is
 * also a user then means that user's mailbox (the "keep a copy" case). Loops, over-deep nesting and
 * local targets that resolve to nothing are skipped (and reported as `problems`); when nothing at
 * all is left the recipient is "unknown". Targets are de-duplicated (case-insensitively).
 */
import { splitAddress } from "../mail/address.ts";
import type { RecipientResolution, Target } from "./account-store.ts";

/** What resolution needs to know, keyed by lower-cased address. */
export interface AccountSnapshot {
  /** Local domains, lower-case A-labels; the first is the primary (for a bare "<Postmaster>"). */
  readonly domains: ReadonlySet<string>;
  /** Lower-cased address → canonical user address. */
  readonly users: ReadonlyMap<string, string>;
  /** Lower-cased source ("local@domain", or "@domain" for a catch-all) → targets. */
  readonly aliases: ReadonlyMap<string, readonly string[]>;
}

export interface ResolveOptions {
  /** Sub-address separator characters; "" turns sub-addressing off. Default "+". */
  readonly separators?: string;
  /** Where postmaster@ and abuse@ of every local domain go when no alias or user of that name exists there. */
  readonly postmaster?: string;
}

/** The role addresses (RFC 2142 §2, RFC 5321 §4.5.1) that the `postmaster` setting receives for every local domain. */
const ROLE_LOCAL_PARTS: ReadonlySet<string> = new Set(["postmaster", "abuse"]);

export const DEFAULT_SUBADDRESS_SEPARATORS = "+";
/** How many aliases may nest (an alias whose target is an alias is depth 2). */
export const MAX_ALIAS_DEPTH = 10;

export interface AliasProblem {
  readonly kind: "loop" | "depth" | "unresolved";
  readonly text: string;
}

/** The part of a lower-cased local part before its first separator, or undefined if not sub-addressed. */
export function subaddressBase(local: string, separators: string): string | undefined {
  if (separators === "") return undefined;
  for (let i = 1; i < local.length; i++) {
    if (separators.includes(local[i])) return local.slice(0, i);
  }
  return undefined;
}

class Resolver {
  readonly problems: AliasProblem[] = [];
  /** True when any target came from a catch-all (the sender check must not honour those). */
  usedCatchAll = false;
  private readonly snap: AccountSnapshot;
  private readonly separators: string;
  private readonly postmaster: string | undefined;

  constructor(snap: AccountSnapshot, options: ResolveOptions) {
    this.snap = snap;
    this.separators = options.separators ?? DEFAULT_SUBADDRESS_SEPARATORS;
    this.postmaster = options.postmaster;
  }

  /** Targets for a local-domain address; null when nothing matched at all. */
  resolveLocal(local: string, domain: string, depth: number, path: readonly string[]): Target[] | null {
    const lower = local.toLowerCase();
    const exact = this.lookup(lower, domain, depth, path);
    if (exact) return exact;
    const base = subaddressBase(lower, this.separators);
    if (base !== undefined) {
      const viaBase = this.lookup(base, domain, depth, path);
      if (viaBase) return viaBase;
    }
    const catchAll = `@${domain}`;
    if (this.snap.aliases.has(catchAll)) {
      this.usedCatchAll = true;
      return this.expand(catchAll, depth, path);
    }
    return null;
  }

  /** Alias, then user, then the postmaster rule, for one exact lower-cased local part. */
  private lookup(lower: string, domain: string, depth: number, path: readonly string[]): Target[] | null {
    const key = `${lower}@${domain}`;
    const user = this.snap.users.get(key);
    const postmaster = lower === "postmaster";
    if (this.snap.aliases.has(key)) {
      // Met again on its own expansion path: a user (or postmaster) means its mailbox; else a loop.
      if (path.includes(key)) {
        if (user !== undefined) return [{ type: "mailbox", address: user }];
        if (postmaster) return [{ type: "mailbox", address: key }];
        this.problems.push({ kind: "loop", text: `alias loop: ${[...path, key].join(" → ")}` });
        return [];
      }
      const targets = this.expand(key, depth, path);
      if (targets.length > 0) return targets;
      if (user !== undefined) return [{ type: "mailbox", address: user }];
      if (postmaster) return [{ type: "mailbox", address: key }];
      return [];
    }
    if (user !== undefined) return [{ type: "mailbox", address: user }];
    const role = this.roleTargets(lower, key, depth, path);
    if (role) return role;
    if (postmaster) return [{ type: "mailbox", address: key }];
    return null;
  }

  /**
   * postmaster@ / abuse@ sent to the `postmaster` setting, expanded like an alias; null when not
   * configured, not a role address, or when the setting leads back here or to nothing (then
   * postmaster@ falls back to its own mailbox).
   */
  private roleTargets(lower: string, key: string, depth: number, path: readonly string[]): Target[] | null {
    if (this.postmaster === undefined || !ROLE_LOCAL_PARTS.has(lower) || path.includes(key)) return null;
    const targets = this.expandTargets(key, [this.postmaster], depth, path);
    return targets.length > 0 ? targets : null;
  }

  /** Expand the alias `key` (already known to exist). */
  expand(key: string, depth: number, path: readonly string[]): Target[] {
    return this.expandTargets(key, this.snap.aliases.get(key) ?? [], depth, path);
  }

  /** Resolve `targets` as the expansion of `key` (an alias, or a role address routed by the `postmaster` setting). */
  private expandTargets(key: string, targets: readonly string[], depth: number, path: readonly string[]): Target[] {
    if (path.includes(key)) {
      this.problems.push({ kind: "loop", text: `alias loop: ${[...path, key].join(" → ")}` });
      return [];
    }
    if (depth >= MAX_ALIAS_DEPTH) {
      this.problems.push({ kind: "depth", text: `aliases nest deeper than ${MAX_ALIAS_DEPTH}: ${[...path, key].join(" → ")}` });
      return [];
    }
    const out: Target[] = [];
    const inner = [...path, key];
    for (const target of targets) {
      const { local, domain } = splitAddress(target);
      if (!this.snap.domains.has(domain)) {
        out.push({ type: "forward", address: `${local}@${domain}` });
        continue;
      }
      const r = this.resolveLocal(local, domain, depth + 1, inner);
      if (r === null) this.problems.push({ kind: "unresolved", text: `alias ${key}: target ${target} is no user or alias here` });
      else out.push(...r);
    }
    return out;
  }
}

function dedupe(targets: readonly Target[]): Target[] {
  const seen = new Set<string>();
  const out: Target[] = [];
  for (const t of targets) {
    const k = `${t.type}:${t.address.toLowerCase()}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(t);
  }
  return out;
}

export interface DetailedResolution {
  readonly resolution: RecipientResolution;
  readonly problems: readonly AliasProblem[];
  readonly usedCatchAll: boolean;
}

/** Resolve with the details (problems met, whether a catch-all was used). */
export function resolveRecipientDetailed(snap: AccountSnapshot, address: string, options: ResolveOptions = {}): DetailedResolution {
  let { local, domain } = splitAddress(address);
  // RFC 5321 §4.1.1.3: "<Postmaster>" without a domain is this host's postmaster.
  if (domain === "" && local.toLowerCase() === "postmaster") {
    const primary = snap.domains.values().next();
    if (primary.done) return { resolution: { kind: "not-local" }, problems: [], usedCatchAll: false };
    domain = primary.value;
  }
  if (!snap.domains.has(domain)) return { resolution: { kind: "not-local" }, problems: [], usedCatchAll: false };
  const r = new Resolver(snap, options);
  const targets = local === "" ? null : r.resolveLocal(local, domain, 0, []);
  let resolution: RecipientResolution;
  if (targets === null) resolution = { kind: "unknown", reason: "no such user here" };
  else if (targets.length === 0) {
    resolution = { kind: "unknown", reason: `no deliverable target: ${r.problems.map((p) => p.text).join("; ")}` };
  } else resolution = { kind: "local", targets: dedupe(targets) };
  return { resolution, problems: r.problems, usedCatchAll: r.usedCatchAll };
}

/** Where mail for `address` goes (see the rules at the top of this file). */
export function resolveRecipient(snap: AccountSnapshot, address: string, options: ResolveOptions = {}): RecipientResolution {
  return resolveRecipientDetailed(snap, address, options).resolution;
}

/**
 * Whether local delivery may write into the mailbox `address` now: a user of a local domain, or
 * postmaster@ of one (rule 5). Asked again at delivery, because the user may have been removed
 * while mail for it waited in the queue (Postfix's virtual(8) looks the recipient up then too).
 */
export function isMailbox(snap: AccountSnapshot, address: string): boolean {
  const { local, domain } = splitAddress(address);
  if (!snap.domains.has(domain)) return false;
  const lower = local.toLowerCase();
  return lower === "postmaster" || snap.users.has(`${lower}@${domain}`);
}

/**
 * Loops and over-deep nesting met when expanding each alias (catch-alls included). Writers call
 * this before and after a change and refuse a change that adds problems.
 */
export function aliasProblems(snap: AccountSnapshot, options: ResolveOptions = {}): AliasProblem[] {
  const out = new Map<string, AliasProblem>();
  for (const key of snap.aliases.keys()) {
    const r = new Resolver(snap, options);
    r.expand(key, 0, []);
    for (const p of r.problems) if (p.kind !== "unresolved") out.set(p.text, p);
  }
  return [...out.values()];
}

/**
 * May the user with canonical address `user` use `address` as its sender (MAIL FROM)?
 * Allowed: its own address; its own sub-addresses ("alice+lists@d" for alice@d — mail to those
 * reaches alice, so she owns them); the extra `addresses` given (the config file's per-user list);
 * and an explicit alias (or sub-address of one) whose expansion reaches alice's mailbox — the
 * "sales@ → alice" case. Catch-all aliases never grant a sender address.
 */
export function ownsAddress(
  snap: AccountSnapshot,
  user: string,
  address: string,
  extraAddresses: readonly string[] = [],
  options: ResolveOptions = {},
): boolean {
  const separators = options.separators ?? DEFAULT_SUBADDRESS_SEPARATORS;
  const mine = user.toLowerCase();
  const { local, domain } = splitAddress(address);
  const lower = local.toLowerCase();
  const wanted = `${lower}@${domain}`;
  if (wanted === mine || extraAddresses.some((a) => a.toLowerCase() === wanted)) return true;
  const base = subaddressBase(lower, separators);
  if (base !== undefined && `${base}@${domain}` === mine && !snap.aliases.has(wanted) && !snap.users.has(wanted)) return true;
  for (const key of base === undefined ? [wanted] : [wanted, `${base}@${domain}`]) {
    if (!snap.aliases.has(key)) {
      if (snap.users.has(key)) return false; // somebody else's address
      continue;
    }
    const d = resolveRecipientDetailed(snap, key, options);
    if (d.usedCatchAll || d.resolution.kind !== "local") return false;
    return d.resolution.targets.some((t) => t.type === "mailbox" && t.address.toLowerCase() === mine);
  }
  return false;
}
