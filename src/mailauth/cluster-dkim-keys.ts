/**
 * DKIM keys of a cluster (`storage.kind: postgres`): made once into the database, and loaded from
 * there by every node, so that all nodes sign with the key of the published record. A node that
 * ran alone before has its keys as files (dkim-keys.ts): a key named in dkim.domains that the
 * database lacks is moved in from this node's data directory once — the first node to do so wins,
 * and every node then signs with that one — and the file is left where it is.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { stat } from "node:fs/promises";
import type { DkimKeyStore } from "./dkim-key-store.ts";
import type { DkimSigningKey } from "./dkim-sign.ts";
import {
  checkedDomain, dkimKeyPaths, dkimRecordValue, keyAlgorithm, loadDkimKey, newKeyPair, signingKey,
  type KeyAlgorithm, type StoredPublicKey,
} from "./dkim-keys.ts";
import { isSelector } from "./selector.ts";

/** What loading found worth telling the operator: a key moved in, a file that is not the cluster's key. */
export type KeyNote = (level: "info" | "warn", message: string) => void;

/** Make a new key pair in the store; refuses to replace an existing one (rotation uses a new selector). */
export async function generateStoredDkimKey(store: DkimKeyStore, domain: string, selector: string, algorithm: KeyAlgorithm): Promise<{ algorithm: KeyAlgorithm; publicKey: KeyObject }> {
  const name = checkedDomain(domain);
  if (!isSelector(selector)) throw new Error(`invalid DKIM selector "${selector}": letters, digits and hyphens in dot-separated labels`);
  const pair = newKeyPair(algorithm);
  if (!(await store.create(name, selector, pair.privateKeyPem, pair.publicKeyPem))) {
    throw new Error(`the DKIM key "${selector}" of ${name} already exists in the database: choose another selector (keys are never overwritten; see "Rotating a DKIM key")`);
  }
  return { algorithm, publicKey: pair.publicKey };
}

/** The key that signs for (domain, selector): the database's, after moving in this node's file when the database has none. */
export async function loadStoredDkimKey(store: DkimKeyStore, dataDir: string, domain: string, selector: string, note: KeyNote = () => {}): Promise<DkimSigningKey> {
  const name = checkedDomain(domain);
  const paths = dkimKeyPaths(dataDir, name, selector);
  const hasFile = await stat(paths.key).then(() => true, (err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return false;
    throw err;
  });
  let row = await store.get(name, selector);
  if (row === undefined) {
    if (!hasFile) {
      throw new Error(`no DKIM key "${selector}" for ${name} in the database, nor ${paths.key} on this node: create it with "petrel dkim keygen ${name} --selector ${selector}"`);
    }
    // The same checks as on a single node (owner-only, a key that can sign) before it is shared.
    const file = await loadDkimKey(dataDir, name, selector);
    const privateKeyPem = file.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    const publicKeyPem = createPublicKey(file.privateKey).export({ type: "spki", format: "pem" }) as string;
    const moved = await store.create(name, selector, privateKeyPem, publicKeyPem);
    row = await store.get(name, selector);
    if (row === undefined) throw new Error(`DKIM key "${selector}" of ${name}: stored in the database but not found there again`);
    if (moved) note("info", `DKIM key "${selector}" of ${name} moved from ${paths.key} into the database, for every node (the file is left as it is)`);
  }
  const key = signingKey(row.privateKeyPem, `"${selector}" of ${name} in the database`, name, selector);
  if (hasFile) {
    // A file under the same selector that holds another key is what the database prevents: say so, it is not used.
    const file = await loadDkimKey(dataDir, name, selector).catch(() => undefined);
    if (file === undefined || dkimRecordValue(file.privateKey) !== dkimRecordValue(key.privateKey)) {
      note("warn", `${paths.key} is not the cluster's DKIM key "${selector}" of ${name}: the key in the database (made by node ${row.node}) signs; the file is not used`);
    }
  }
  return key;
}

/** Every key of a domain in the store, by selector, with its key record. */
export async function listStoredDkimKeys(store: DkimKeyStore, domain: string): Promise<StoredPublicKey[]> {
  return (await store.list(checkedDomain(domain))).map((row) => {
    const publicKey = createPublicKey(row.publicKeyPem);
    return { selector: row.selector, algorithm: keyAlgorithm(publicKey), record: dkimRecordValue(publicKey) };
  });
}
