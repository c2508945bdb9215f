/**
 * What ACME keeps on disk, in <dataDir>/acme/ (mode 0700, every file 0600):
 *
 *   account.key       the ACME account's private key (PEM), made once
 *   certificate.pem   the served certificate: its private key, then the chain
 *                     (leaf first), in one file so that one rename replaces
 *                     both at once and a reload never sees a key and a
 *                     certificate that do not belong together
 *
 * Until the first issuance, certificate.pem holds a self-signed placeholder
 * so that TLS works from the first start. A new certificate is written to a
 * temporary file, fsync'd, renamed over the old one and the directory
 * fsync'd; nothing else ever removes or truncates it, so a failed order
 * leaves the working certificate in place.
 *
 * That is FileAcmeStore, the store of a single node. With `storage.kind:
 * postgres` the same state lives in the cluster's database
 * (storage/postgres/acme-store.ts) and this directory holds only the copy of
 * the certificate that the node's TLS listeners load.
 */
import { generateKeyPairSync } from "node:crypto";
import { chmod, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { generateSelfSigned } from "../server/tls-certificates.ts";
import { writeAtomically } from "../disk/atomic-file.ts";
import { describeCertificate, type HeldCertificate } from "./renewal.ts";

export type CertificateKeyType = "ecdsa" | "rsa";

/** An open challenge's answer, as other nodes need it to answer for the node that ordered. */
export type StoredChallenge =
  | { readonly type: "http-01"; readonly token: string; readonly keyAuthorization: string }
  | { readonly type: "tls-alpn-01"; readonly name: string; readonly certPem: string; readonly keyPem: string };

/** Which challenge: the HTTP-01 token, or the name of a TLS-ALPN-01 challenge. */
export type ChallengeKey = { readonly type: "http-01"; readonly token: string } | { readonly type: "tls-alpn-01"; readonly name: string };

/** What the ACME service keeps: the account key, the certificate, the challenges in progress. */
export interface AcmeStore {
  /** The account key, made (EC P-256) and stored on first use. */
  accountKey(): Promise<string>;
  /** The held certificate, or undefined when there is none or it does not parse. */
  current(): Promise<HeldCertificate | undefined>;
  /** Replace the held certificate with a newly issued one. */
  saveCertificate(keyPem: string, chainPem: string): Promise<HeldCertificate>;
  /**
   * Make the certificate this node serves the held one, when another node stored a newer one:
   * the certificate now to be served, or undefined when nothing changed.
   */
  adopt(): Promise<HeldCertificate | undefined>;
  /** Publish an open challenge's answer for the other nodes (the ordering node answers from memory). */
  addChallenge(challenge: StoredChallenge): Promise<void>;
  removeChallenge(key: ChallengeKey): Promise<void>;
  /** An open challenge's answer published by any node, or undefined. */
  challenge(key: ChallengeKey): Promise<StoredChallenge | undefined>;
}

/** The store of a single node: <dataDir>/acme/; its challenges are in memory only (ChallengeResponses). */
export class FileAcmeStore implements AcmeStore {
  readonly dir: string;
  /** The certificate file, which is also its key file. */
  readonly certificatePath: string;
  private readonly accountKeyPath: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "acme");
    this.certificatePath = join(this.dir, "certificate.pem");
    this.accountKeyPath = join(this.dir, "account.key");
  }

  /** Every file kept here (for handing them to the user Petrel runs as). */
  files(): string[] {
    return [this.certificatePath, this.accountKeyPath];
  }

  /** The account key, made (EC P-256) and stored on first use. */
  async accountKey(): Promise<string> {
    const existing = await readIfExists(this.accountKeyPath);
    if (existing) return existing;
    await this.ensureDir();
    const pem = newPrivateKey("ecdsa");
    await writeAtomically(this.accountKeyPath, pem);
    return pem;
  }

  /** The held certificate, or undefined when there is none or it does not parse. */
  async current(): Promise<HeldCertificate | undefined> {
    const pem = await readIfExists(this.certificatePath);
    if (!pem) return undefined;
    try {
      return describeCertificate(pem);
    } catch {
      return undefined;
    }
  }

  /** Write a self-signed placeholder when no certificate is held, so that TLS works before the first issuance. */
  async ensurePlaceholder(hostname: string, names: readonly string[]): Promise<void> {
    if (await this.current()) return;
    await this.ensureDir();
    const pems = await generateSelfSigned(hostname, { extraNames: [...names] });
    await writeAtomically(this.certificatePath, joinPem(pems.key, pems.cert));
  }

  /** Replace the served certificate with a newly issued one. */
  async saveCertificate(keyPem: string, chainPem: string): Promise<HeldCertificate> {
    await this.ensureDir();
    const described = describeCertificate(chainPem); // refuse to write what will not load
    await writeAtomically(this.certificatePath, joinPem(keyPem, chainPem));
    return described;
  }

  /** One node: the served certificate is the held one. */
  async adopt(): Promise<HeldCertificate | undefined> {
    return undefined;
  }

  /** One node answers its own challenges from memory. */
  async addChallenge(): Promise<void> {}

  async removeChallenge(): Promise<void> {}

  async challenge(): Promise<StoredChallenge | undefined> {
    return undefined;
  }

  /** The account key file's content, without making one (undefined when there is none). */
  async existingAccountKey(): Promise<string | undefined> {
    return readIfExists(this.accountKeyPath);
  }

  /** The certificate file's content (key, then chain), or undefined when there is none. */
  async servedPem(): Promise<string | undefined> {
    return readIfExists(this.certificatePath);
  }

  /** Replace the served file with `pem` (key, then chain) as it was stored elsewhere. */
  async writeServed(pem: string): Promise<void> {
    await this.ensureDir();
    await writeAtomically(this.certificatePath, pem);
  }

  private async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
  }
}

/** A fresh private key (PKCS#8 PEM) for a certificate or an account. */
export function newPrivateKey(type: CertificateKeyType): string {
  const { privateKey } = type === "rsa"
    ? generateKeyPairSync("rsa", { modulusLength: 2048 })
    : generateKeyPairSync("ec", { namedCurve: "P-256" });
  return privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

export function joinPem(...parts: string[]): string {
  return parts.map((p) => (p.endsWith("\n") ? p : `${p}\n`)).join("");
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
