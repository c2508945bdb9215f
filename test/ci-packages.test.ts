/**
 * The README's test command (.ci/run) installs every Debian package a test
 * asks for: each package named in a requirePeer, requirePeerFile,
 * requirePerlModule or requirePythonModule call under test/ must be in .ci/run's packages list, so
 * that a fresh machine never lacks what a developer's machine happened to have.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

async function ciPackages(): Promise<Set<string>> {
  const script = await readFile(join(root, ".ci", "run"), "utf8");
  const list = /^packages=\(([\s\S]*?)^\)/m.exec(script);
  assert.ok(list, "a packages=( … ) list in .ci/run");
  const names = list[1].split("\n").map((l) => l.replace(/#.*$/, "").trim()).join(" ").split(/\s+/).filter(Boolean);
  return new Set(names);
}

async function requested(): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  const call = /require(?:Peer|PeerFile|PerlModule|PythonModule)\(\s*[^,()]+,\s*"([^"]+)"\s*\)/g;
  for (const rel of await readdir(join(root, "test"), { recursive: true })) {
    if (!rel.endsWith(".ts")) continue;
    const text = await readFile(join(root, "test", rel), "utf8");
    for (const m of text.matchAll(call)) {
      for (const pkg of m[1].split(/\s+/)) found.set(pkg, [...(found.get(pkg) ?? []), rel]);
    }
  }
  return found;
}

test("every Debian package a test requires is installed by .ci/run", async () => {
  const installed = await ciPackages();
  const wanted = await requested();
  for (const pkg of ["swaks", "libnet-ssleay-perl", "python3", "dovecot-imapd", "dovecot-lmtpd", "postfix", "openssl"]) {
    assert.ok(wanted.has(pkg), `some test requires ${pkg} (the scan finds the calls)`);
  }
  const missing = [...wanted].filter(([pkg]) => !installed.has(pkg)).map(([pkg, files]) => `${pkg} (${[...new Set(files)].join(", ")})`);
  assert.deepEqual(missing, [], "add these to packages=( … ) in .ci/run");
});
