/**
 * The self-signed certificate Petrel uses when the configuration names none,
 * so that STARTTLS and port 465 work out of the box. It is generated once
 * into <dataDir>/tls/ and reused on later starts; it is generated again only
 * when the files are missing or unusable, expired (or about to be), or do
 * not cover the configured hostname.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";

export interface CertificatePaths {
  certPath: string;
  keyPath: string;
}

const DAY = 86_400_000;
/** Regenerate when fewer than this many days of validity remain. */
const RENEW_BEFORE_DAYS = 7;

/** `<dir>/tls/self-signed.crt` and `.key`; generated when absent or unusable. */
export async function ensureSelfSigned(dir: string, hostname: string): Promise<CertificatePaths> {
  const tlsDir = join(dir, "tls");
  const certPath = join(tlsDir, "self-signed.crt");
  const keyPath = join(tlsDir, "self-signed.key");
  if (await usable(certPath, keyPath, hostname)) return { certPath, keyPath };

  await mkdir(tlsDir, { recursive: true, mode: 0o700 });
  const pems = await generateSelfSigned(hostname);
  // Write both under temporary names, then rename: a crash never leaves half a pair.
  const suffix = `.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeFile(keyPath + suffix, pems.key, { mode: 0o600 });
    await chmod(keyPath + suffix, 0o600); // in case the umask or an old file interfered
    await writeFile(certPath + suffix, pems.cert, { mode: 0o644 });
    await rename(keyPath + suffix, keyPath);
    await rename(certPath + suffix, certPath);
  } finally {
    await rm(keyPath + suffix, { force: true });
    await rm(certPath + suffix, { force: true });
  }
  return { certPath, keyPath };
}

/** A fresh self-signed certificate for `hostname` (+ localhost, 127.0.0.1, ::1), EC P-256, 1 year. */
export async function generateSelfSigned(
  hostname: string,
  options: { extraNames?: string[]; days?: number } = {},
): Promise<{ cert: string; key: string }> {
  const names = [...new Set([hostname, "localhost", ...(options.extraNames ?? [])])];
  const altNames: Array<{ type: 2; value: string } | { type: 7; ip: string }> = [];
  for (const n of names) altNames.push(isIP(n) ? { type: 7, ip: n } : { type: 2, value: n });
  for (const ip of ["127.0.0.1", "::1"]) if (!names.includes(ip)) altNames.push({ type: 7, ip });
  const notBeforeDate = new Date(Date.now() - 60_000); // tolerate a little clock skew
  const notAfterDate = new Date(notBeforeDate.getTime() + (options.days ?? 365) * DAY);
  // selfsigned (with @peculiar/x509) is loaded only when a certificate is made, not on every start.
  const { generate } = await import("selfsigned");
  const pems = await generate([{ name: "commonName", value: hostname }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** A subjectAltName as Node prints it, "DNS:a.example, IP Address:127.0.0.1", as a list: ["a.example", "127.0.0.1"]. */
export function altNames(san: string | undefined): string[] {
  if (!san) return [];
  return san.split(/,\s*/).map((n) => n.replace(/^(DNS|IP Address):/, "")).filter((n) => n !== "");
}

async function usable(certPath: string, keyPath: string, hostname: string): Promise<boolean> {
  try {
    const [certPem, keyPem] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
    const cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return false;
    if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_DAYS * DAY) return false;
    const covered = isIP(hostname) ? cert.checkIP(hostname) : cert.checkHost(hostname);
    return covered !== undefined;
  } catch {
    return false;
  }
}
