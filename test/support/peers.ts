/**
 * The real programs tests talk to — swaks, Python's smtplib, Dovecot,
 * Postfix, openssl — come from Debian packages that `.ci/run` installs. A test
 * that needs one asks for it first; when it is missing the test fails (never
 * skips) with one line naming the package and the command that installs it.
 * test/ci-packages.test.ts checks that every package named here is in .ci/run.
 *
 *   before(() => { requirePeer("swaks", "swaks"); requirePerlModule("Net::SSLeay", "libnet-ssleay-perl"); });
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Root's directories too: daemons (dovecot, postfix) live in sbin. */
const SEARCH = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"].filter(Boolean);

export class PeerMissing extends Error {
  override readonly name = "PeerMissing";
}

function install(debianPackage: string): string {
  return `install the Debian package ${debianPackage} (as root: apt-get install -y --no-install-recommends ${debianPackage}), or run .ci/run, which installs every test peer`;
}

/** The absolute path of `binary`, or a PeerMissing naming `debianPackage`. */
export function requirePeer(binary: string, debianPackage: string): string {
  for (const dir of SEARCH) {
    const path = join(dir, binary);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new PeerMissing(`${binary} is missing: ${install(debianPackage)}`);
}

/** A file a package installs besides its main program (Dovecot's imap and lmtp services). */
export function requirePeerFile(path: string, debianPackage: string): string {
  try {
    accessSync(path, constants.R_OK);
    return path;
  } catch {
    throw new PeerMissing(`${path} is missing: ${install(debianPackage)}`);
  }
}

/** A Perl module a peer loads at run time (swaks' TLS is Net::SSLeay, only a Recommends of swaks). */
export function requirePerlModule(module: string, debianPackage: string): void {
  const perl = requirePeer("perl", "perl");
  const r = spawnSync(perl, [`-M${module}`, "-e", "1"], { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) throw new PeerMissing(`the Perl module ${module} is missing: ${install(debianPackage)}`);
}

/**
 * A module of Debian's Python (/usr/bin/python3, not a python3 earlier on the
 * PATH such as pyenv's, which cannot see Debian's modules); its path.
 */
export function requirePythonModule(module: string, debianPackage: string): string {
  const python = requirePeerFile("/usr/bin/python3", "python3");
  const r = spawnSync(python, ["-c", `import ${module}`], { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) throw new PeerMissing(`the Python module ${module} is missing: ${install(debianPackage)}`);
  return python;
}

/** Tests that start daemons as root (Dovecot, Postfix), bind port 53 or switch users. */
export function requireRoot(why: string): void {
  if (process.getuid?.() !== 0) throw new PeerMissing(`${why} needs root: run the tests as root, as .ci/run does`);
}
