/**
 * Certificates for tests, made with the selfsigned package (Petrel's own
 * dependency): a test CA, and leaf certificates it signs for chosen names
 * and dates — expired, not yet valid, for the wrong name. Written to PEM
 * files in `dir`.
 */
import { writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { generate } from "selfsigned";

export interface TestCa {
  readonly cert: string;
  readonly key: string;
  readonly certPath: string;
}

export interface LeafFiles {
  readonly cert: string;
  readonly key: string;
  readonly certPath: string;
  readonly keyPath: string;
}

const DAY = 86_400_000;

export async function makeCa(dir: string, name = "Petrel Test CA"): Promise<TestCa> {
  const now = Date.now();
  const pems = await generate([{ name: "commonName", value: name }, { name: "organizationName", value: "Petrel tests" }], {
    keyType: "ec", curve: "P-256", algorithm: "sha256",
    notBeforeDate: new Date(now - 30 * DAY), notAfterDate: new Date(now + 3650 * DAY),
    extensions: [
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const certPath = join(dir, "ca.pem");
  await writeFile(certPath, pems.cert);
  return { cert: pems.cert, key: pems.private, certPath };
}

/**
 * A server certificate for `names` signed by `ca` (self-signed without one),
 * valid from `daysFrom` to `daysTo` days from now (negative: in the past).
 */
export async function makeLeaf(dir: string, file: string, options: { names: readonly string[]; ca?: TestCa; daysFrom?: number; daysTo?: number }): Promise<LeafFiles> {
  const now = Date.now();
  const altNames = options.names.map((n) => (isIP(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n }));
  const pems = await generate([{ name: "commonName", value: options.names[0] }], {
    keyType: "ec", curve: "P-256", algorithm: "sha256",
    notBeforeDate: new Date(now + (options.daysFrom ?? -1) * DAY),
    notAfterDate: new Date(now + (options.daysTo ?? 90) * DAY),
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames },
    ],
    ...(options.ca ? { ca: { key: options.ca.key, cert: options.ca.cert } } : {}),
  });
  const certPath = join(dir, `${file}.crt`);
  const keyPath = join(dir, `${file}.key`);
  await writeFile(certPath, pems.cert);
  await writeFile(keyPath, pems.private, { mode: 0o600 });
  return { cert: pems.cert, key: pems.private, certPath, keyPath };
}
