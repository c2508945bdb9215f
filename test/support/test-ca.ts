/**
 * A private certificate authority for tests that need certificates a client verifies: the CA,
 * and server certificates it issues for given names (or self-signed ones, or expired ones).
 * Petrel's outbound side trusts it through the `ca` option (MtaOptions, RemoteAgentOptions);
 * nothing here is trusted by the system.
 *
 *   const ca = await createTestCa();
 *   const server = await ca.issue(["mx.a.test"]);            // { cert, key } PEM
 *   const expired = await ca.issue(["mx.a.test"], { expired: true });
 */
import { createHash, X509Certificate } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generate } from "selfsigned";

export interface Issued {
  readonly cert: string;
  readonly key: string;
}

export interface TestCa extends Issued {
  issue(names: readonly string[], options?: { expired?: boolean }): Promise<Issued>;
}

const DAY = 86_400_000;

function altNames(names: readonly string[]) {
  return names.map((n) => (/^[\d.]+$|:/.test(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n }));
}

export async function createTestCa(commonName = "Petrel Test CA"): Promise<TestCa> {
  const now = Date.now();
  const ca = await generate([{ name: "commonName", value: commonName }], {
    keyType: "ec", curve: "P-256", algorithm: "sha256",
    notBeforeDate: new Date(now - DAY), notAfterDate: new Date(now + 365 * DAY),
    extensions: [
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return {
    cert: ca.cert,
    key: ca.private,
    issue: (names, options = {}) => issue(names, { ca: { cert: ca.cert, key: ca.private }, ...options }),
  };
}

/** A server certificate for `names`, issued by `ca`, or self-signed without one. */
export async function issue(names: readonly string[], options: { ca?: Issued; expired?: boolean } = {}): Promise<Issued> {
  const now = Date.now();
  const [notBeforeDate, notAfterDate] = options.expired
    ? [new Date(now - 30 * DAY), new Date(now - DAY)]
    : [new Date(now - DAY), new Date(now + 90 * DAY)];
  const pems = await generate([{ name: "commonName", value: names[0] }], {
    keyType: "ec", curve: "P-256", algorithm: "sha256", notBeforeDate, notAfterDate,
    ...(options.ca ? { ca: { cert: options.ca.cert, key: options.ca.key } } : {}),
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: altNames(names) },
    ],
  });
  // A server sends its chain: its own certificate, then the CA's (so DANE-TA can find the anchor).
  return { cert: options.ca ? `${pems.cert.trim()}\n${options.ca.cert.trim()}\n` : pems.cert, key: pems.private };
}

/** Write a certificate and key as files (Petrel's tls.cert / tls.key take paths). */
export async function writePair(dir: string, name: string, pair: Issued): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await writeFile(cert, pair.cert);
  await writeFile(key, pair.key, { mode: 0o600 });
  return { cert, key };
}

/** The data of a TLSA record for the first certificate of `pem`: selector 0 (certificate) or 1 (public key), matching 0, 1 (SHA-256) or 2 (SHA-512), in hex. */
export function tlsaData(pem: string, selector: 0 | 1, matchingType: 0 | 1 | 2): string {
  const cert = new X509Certificate(pem);
  const data = selector === 0 ? cert.raw : cert.publicKey.export({ type: "spki", format: "der" });
  if (matchingType === 0) return data.toString("hex");
  return createHash(matchingType === 1 ? "sha256" : "sha512").update(data).digest("hex");
}
