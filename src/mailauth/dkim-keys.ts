/**
 * DKIM keys on disk: `<dataDir>/dkim/<domain>/<selector>.key` (the private key, PKCS#8 PEM) and
 * `<selector>.pub` (its public key, SPKI PEM), in directories only the owner may enter (0700)
 * and files only the owner may read (0600). A private key that others can read is refused
 * rather than used: it is the domain's identity.
 *
 * The key record (RFC 6376 §3.6.1) is derived from the public key: `k=rsa` with the SPKI DER in
 * base64, or `k=ed25519` with the raw 32-octet key (RFC 8463 §4).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmod, mkdir, open, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { normalizeDomain } from "../mail/address.ts";
import { dkimAlgorithm, type DkimSigningKey } from "./dkim-sign.ts";
import { isSelector } from "./selector.ts";

export type KeyAlgorithm = "rsa" | "ed25519";

export const RSA_BITS = 2048;

export interface KeyPaths {
  readonly dir: string;
  readonly key: string;
  readonly pub: string;
}

export function dkimKeyPaths(dataDir: string, domain: string, selector: string): KeyPaths {
  const dir = join(dataDir, "dkim", checkedDomain(domain));
  if (!isSelector(selector)) throw new Error(`invalid DKIM selector "${selector}": letters, digits and hyphens in dot-separated labels`);
  return { dir, key: join(dir, `${selector}.key`), pub: join(dir, `${selector}.pub`) };
}

export interface GeneratedKey extends KeyPaths {
  readonly algorithm: KeyAlgorithm;
  readonly publicKey: KeyObject;
}

/** Make a new key pair; refuses to replace an existing key (rotation uses a new selector). */
export async function generateDkimKey(dataDir: string, domain: string, selector: string, algorithm: KeyAlgorithm): Promise<GeneratedKey> {
  const paths = dkimKeyPaths(dataDir, domain, selector);
  const pair = newKeyPair(algorithm);
  for (const dir of [join(dataDir, "dkim"), paths.dir]) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  }
  await writeNew(paths.key, pair.privateKeyPem);
  await writeNew(paths.pub, pair.publicKeyPem);
  return { ...paths, algorithm, publicKey: pair.publicKey };
}

export interface KeyPair {
  readonly publicKey: KeyObject;
  /** PKCS#8 PEM. */
  readonly privateKeyPem: string;
  /** SPKI PEM. */
  readonly publicKeyPem: string;
}

/** A new key pair of `algorithm` (RSA of RSA_BITS), as PEM text to store. */
export function newKeyPair(algorithm: KeyAlgorithm): KeyPair {
  const pair = algorithm === "rsa" ? generateKeyPairSync("rsa", { modulusLength: RSA_BITS }) : generateKeyPairSync("ed25519");
  return {
    publicKey: pair.publicKey,
    privateKeyPem: pair.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    publicKeyPem: pair.publicKey.export({ type: "spki", format: "pem" }) as string,
  };
}

async function writeNew(path: string, text: string): Promise<void> {
  let file;
  try {
    file = await open(path, "wx", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new Error(`${path} already exists: choose another selector (keys are never overwritten; see "Rotating a DKIM key")`);
    }
    throw err;
  }
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Load a private key for signing, refusing one that others can read or that cannot sign. */
export async function loadDkimKey(dataDir: string, domain: string, selector: string): Promise<DkimSigningKey> {
  const paths = dkimKeyPaths(dataDir, domain, selector);
  let mode: number;
  try {
    mode = (await stat(paths.key)).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error(`no DKIM key ${paths.key}: create it with "petrel dkim keygen ${checkedDomain(domain)} --selector ${selector}"`);
    }
    throw err;
  }
  if ((mode & 0o077) !== 0) {
    throw new Error(`DKIM key ${paths.key} is readable by others (mode ${mode.toString(8).padStart(4, "0")}): run "chmod 600 ${paths.key}"`);
  }
  return signingKey(await readFile(paths.key), paths.key, domain, selector);
}

/** A private key (PEM) that can sign, or an error naming `where` it came from. */
export function signingKey(pem: string | Buffer, where: string, domain: string, selector: string): DkimSigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`DKIM key ${where} is not a PEM private key: ${(err as Error).message}`);
  }
  try {
    dkimAlgorithm(privateKey);
  } catch (err) {
    throw new Error(`DKIM key ${where}: ${(err as Error).message}`);
  }
  return { domain: checkedDomain(domain), selector, privateKey };
}

export interface StoredPublicKey {
  readonly selector: string;
  readonly algorithm: KeyAlgorithm;
  /** The TXT record value at <selector>._domainkey.<domain>. */
  readonly record: string;
}

/** Every key pair of a domain in the data directory, by selector (from the .pub files). */
export async function listDkimKeys(dataDir: string, domain: string): Promise<StoredPublicKey[]> {
  const dir = join(dataDir, "dkim", checkedDomain(domain));
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: StoredPublicKey[] = [];
  for (const name of names.filter((n) => n.endsWith(".pub")).sort()) {
    const selector = name.slice(0, -4);
    if (!isSelector(selector)) continue;
    const publicKey = createPublicKey(await readFile(join(dir, name)));
    out.push({ selector, algorithm: keyAlgorithm(publicKey), record: dkimRecordValue(publicKey) });
  }
  return out;
}

export function keyAlgorithm(key: KeyObject): KeyAlgorithm {
  if (key.asymmetricKeyType === "rsa" || key.asymmetricKeyType === "ed25519") return key.asymmetricKeyType;
  throw new Error(`unsupported DKIM key type ${key.asymmetricKeyType}`);
}

/** The key record for a public (or private) key: "v=DKIM1; k=rsa; p=…" (RFC 6376 §3.6.1, RFC 8463 §4). */
export function dkimRecordValue(key: KeyObject): string {
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  if (keyAlgorithm(publicKey) === "ed25519") {
    const x = publicKey.export({ format: "jwk" }).x as string;
    return `v=DKIM1; k=ed25519; p=${Buffer.from(x, "base64url").toString("base64")}`;
  }
  return `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;
}

/** The p= value of a key record, whitespace removed; undefined when there is none. */
export function recordPublicKey(record: string): string | undefined {
  const tag = record.split(";").map((t) => t.trim()).find((t) => /^p\s*=/.test(t));
  return tag?.slice(tag.indexOf("=") + 1).replace(/\s+/g, "");
}

export function checkedDomain(domain: string): string {
  const name = normalizeDomain(domain);
  if (name === undefined) throw new Error(`invalid domain "${domain}"`);
  return name;
}
