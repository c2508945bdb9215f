/**
 * `petrel doctor`, what is on this machine: each configured certificate
 * (readable, its key matching, for the right name, not expiring within 14
 * days) and the data directory (there, writable, with room for mail).
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { constants } from "node:fs";
import { access, readFile, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { FileAcmeStore } from "../acme/acme-store.ts";
import type { Config } from "../config/schema.ts";
import { certificateFindings, fileCertificateFacts } from "./certificate.ts";
import { fail, ok, warn, type Finding } from "./finding.ts";

const GiB = 1024 ** 3;

/** A certificate and key the configuration uses, with the name clients ask for. */
interface ConfiguredPair {
  readonly what: string;
  readonly cert: string;
  readonly key: string;
  readonly name: string;
  /** Made by Petrel when it starts: a missing file means it has not started yet. */
  readonly madeByPetrel?: boolean;
  /** What to do when it is self-signed, when that means something else than "get one from a CA". */
  readonly selfSignedFix?: string;
}

function configuredPairs(config: Config): ConfiguredPair[] {
  const t = config.tls;
  const pairs: ConfiguredPair[] = [];
  if (t.acme) {
    // One file: the key, then the chain (acme/acme-store.ts); a self-signed placeholder until the first issuance.
    const file = new FileAcmeStore(config.dataDir).certificatePath;
    pairs.push({
      what: "the ACME certificate", cert: file, key: file, name: config.hostname, madeByPetrel: true,
      selfSignedFix: `no certificate has been issued yet (this is the placeholder): look for the ACME service's errors in Petrel's log; the CA must reach ${config.hostname} on port ${t.acme.challenge === "tls-alpn-01" ? "443" : "80"}`,
    });
  } else if (t.cert !== undefined && t.key !== undefined) pairs.push({ what: "tls.cert", cert: t.cert, key: t.key, name: config.hostname });
  else {
    const dir = join(config.dataDir, "tls");
    pairs.push({ what: "the generated certificate", cert: join(dir, "self-signed.crt"), key: join(dir, "self-signed.key"), name: config.hostname, madeByPetrel: true });
  }
  t.sni.forEach((s, i) => pairs.push({ what: `tls.sni[${i}]`, cert: s.cert, key: s.key, name: s.names[0].replace(/^\*\./, "mail.") }));
  config.listeners.forEach((l, i) => {
    if (l.tls) pairs.push({ what: `listeners[${i}].tls`, cert: l.tls.cert, key: l.tls.key, name: config.hostname });
  });
  return pairs;
}

export async function certificateSetup(config: Config, now: number): Promise<Finding[]> {
  const out: Finding[] = [];
  // Mail clients verify certificates on submission ports; most MTAs sending to port 25 do not.
  const strict = config.listeners.some((l) => l.role !== "mx");
  for (const pair of configuredPairs(config)) {
    const check = "certificate";
    const [certPem, keyPem] = await Promise.all([readable(pair.cert), readable(pair.key)]);
    if (typeof certPem === "string" || typeof keyPem === "string") {
      for (const [file, r] of [[pair.cert, certPem], [pair.key, keyPem]] as const) {
        if (typeof r === "string") out.push(fail(check, `${pair.what}: ${file} ${r}`, pair.madeByPetrel ? "start petrel serve: it writes this file when it starts" : "fix the path in the configuration, or the file's permissions (Petrel's user must read it)"));
        if (pair.cert === pair.key) break;
      }
      continue;
    }
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(certPem);
    } catch (err) {
      out.push(fail(check, `${pair.what}: ${pair.cert} is not a PEM certificate (${(err as Error).message})`, "point tls.cert at the certificate file (PEM, the full chain)"));
      continue;
    }
    try {
      if (!x509.checkPrivateKey(createPrivateKey(keyPem))) {
        out.push(fail(check, `${pair.what}: the key ${pair.key} does not belong to the certificate ${pair.cert}`, "configure the key that was made with this certificate (an ACME client writes them side by side)"));
        continue;
      }
    } catch (err) {
      out.push(fail(check, `${pair.what}: ${pair.key} is not an unencrypted PEM private key (${(err as Error).message})`, "configure the unencrypted private key (PEM)"));
      continue;
    }
    out.push(ok(check, `${pair.what}: ${pair.cert} and its key are readable and belong together`));
    out.push(...certificateFindings(fileCertificateFacts(certPem), { name: pair.name, now, strict, check, ...(pair.selfSignedFix ? { selfSignedFix: pair.selfSignedFix } : {}) }));
  }
  return out;
}

/** The file's content, or why it cannot be read. */
async function readable(path: string): Promise<Buffer | string> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "does not exist" : code === "EACCES" ? "cannot be read by this user (permission denied)" : `cannot be read (${code ?? (err as Error).message})`;
  }
}

export async function dataDirSetup(config: Config): Promise<Finding[]> {
  const dir = config.dataDir;
  const check = "data";
  try {
    if (!(await stat(dir)).isDirectory()) return [fail(check, `${dir} is not a directory`, "set dataDir to a directory")];
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return [fail(check, `${dir} ${code === "ENOENT" ? "does not exist" : `cannot be looked at (${code})`}`, "start petrel serve once (it creates the directory when its parent exists), or create it for Petrel's user")];
  }
  const out: Finding[] = [];
  try {
    await access(dir, constants.W_OK);
    out.push(ok(check, `${dir} is writable`));
  } catch {
    out.push(fail(check, `${dir} is not writable by this user`, `give it to Petrel's user: chown -R ${config.user ?? "USER"} ${dir}`));
  }
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  const share = fs.blocks > 0 ? Math.round((fs.bavail / fs.blocks) * 100) : 100;
  const needed = 2 * config.limits.messageSize;
  const room = `${(free / GiB).toFixed(1)} GiB free (${share}%)`;
  if (free < needed) out.push(fail(check, `only ${room} on the data directory's file system: not enough for two messages of limits.messageSize; mail is refused or lost`, "free space, or move dataDir to a larger disk"));
  else if (free < GiB || share < 5) out.push(warn(check, `${room} on the data directory's file system: the queue and mailboxes will soon fill it`, "free space, or move dataDir to a larger disk"));
  else out.push(ok(check, `${room} on the data directory's file system`));
  if (fs.files > 0 && fs.ffree < 10_000) out.push(warn(check, `only ${fs.ffree} inodes free: every message is a file`, "free files, or move dataDir to a file system with more inodes"));
  return out;
}
