/**
 * Privilege separation through the real CLI, started as root (CI runs the
 * tests as root): `user:` and `group:` are what the kernel reports once
 * Petrel listens, root cannot come back (all four uids changed), delivered
 * Maildir files belong to `delivery.owner`, and the mistakes an operator
 * makes are refused at start-up with the key named.
 */
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { lookupGroup, lookupUser } from "../../src/system/system-users.ts";
import { requireRoot } from "../support/peers.ts";
import {
  SmtpClient, pollUntil, serveMustExit, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";

let nobody: { uid: number; gid: number };
let nogroup: number;
let mail: number;

before(async () => {
  requireRoot("starting Petrel as root to see it switch users");
  const user = await lookupUser("nobody");
  const group = await lookupGroup("nogroup");
  const mailGroup = await lookupGroup("mail");
  if (!user || !group || !mailGroup) throw new Error("expected the Debian base users and groups nobody, nogroup and mail (package base-passwd)");
  nobody = { uid: user.uid, gid: user.gid };
  nogroup = group.gid;
  mail = mailGroup.gid;
});

/** A temp dir the unprivileged user can traverse (mkdtemp makes it 0700). */
async function reachableTempDir() {
  const t = await tempDir("petrel-privs-");
  await chmod(t.dir, 0o711);
  return t;
}

function ids(status: string, key: string): number[] {
  return (new RegExp(`^${key}:\\s*(.*)$`, "m").exec(status)?.[1] ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
}

async function serveFails(config: Record<string, unknown>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const { dir, cleanup } = await reachableTempDir();
  try {
    return await serveMustExit(await writeConfig(dir, { dataDir: join(dir, "data"), ...config }));
  } finally {
    await cleanup();
  }
}

test("as root with user: nobody: the kernel reports nobody's ids once Petrel listens; mail lands as delivery.owner (nobody:mail, shared modes)", { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await reachableTempDir();
  let p: PetrelProcess | null = null;
  try {
    const dataDir = join(dir, "data");
    const config = await writeConfig(dir, {
      user: "nobody",
      group: "nogroup",
      dataDir,
      listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
      delivery: { owner: { user: "nobody", group: "mail" } },
    });
    p = await servePetrel(config, 1);
    const status = await readFile(`/proc/${p.pid}/status`, "utf8");
    assert.deepEqual(ids(status, "Uid"), [nobody.uid, nobody.uid, nobody.uid, nobody.uid], "real, effective, saved and fs uid: root cannot be regained");
    assert.deepEqual(ids(status, "Gid"), [nogroup, nogroup, nogroup, nogroup]);
    const groups = ids(status, "Groups");
    assert.ok(groups.includes(mail), `in the owner's group (mail): ${groups.join(" ")}`);
    assert.ok(!groups.includes(0), "not in group root");
    assert.equal((await stat(dataDir)).uid, nobody.uid, "the data directory Petrel created belongs to the user");
    assert.equal((await stat(join(dataDir, "petrel.pid"))).uid, nobody.uid);

    const c = await SmtpClient.connect(p.port("mx"));
    await c.ehlo();
    assert.equal((await c.send("sender@example.org", ["postmaster@localhost"], "Subject: owned\r\n\r\nhello\r\n")).code, 250);
    await c.quit();
    const box = join(dataDir, "mail", "localhost", "postmaster");
    const [name] = await pollUntil(async () => {
      const n = await readdir(join(box, "new")).catch(() => [] as string[]);
      return n.length > 0 ? n : undefined;
    }, 15_000);
    const file = await stat(join(box, "new", name));
    assert.equal(file.uid, nobody.uid);
    assert.equal(file.gid, mail);
    assert.equal(file.mode & 0o7777, 0o660);
    for (const d of [join(dataDir, "mail", "localhost"), box, join(box, "new"), join(box, "cur"), join(box, "tmp")]) {
      const st = await stat(d);
      assert.deepEqual([st.uid, st.gid, (st.mode & 0o7777).toString(8)], [nobody.uid, mail, "2770"], d);
    }
    for (const name of await readdir(join(dataDir, "spool"), { recursive: true })) {
      assert.equal((await stat(join(dataDir, "spool", name))).uid, nobody.uid, `spool/${name} belongs to the user`);
    }
    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
  } finally {
    if (p) await stopPetrel(p);
    SmtpClient.closeAll();
    await cleanup();
  }
});

test("as root with user: nobody and workers: 2: every SMTP worker runs as nobody, and mail through them lands", { timeout: 90_000 }, async () => {
  const { dir, cleanup } = await reachableTempDir();
  let p: PetrelProcess | null = null;
  try {
    const dataDir = join(dir, "data");
    p = await servePetrel(await writeConfig(dir, {
      user: "nobody", group: "nogroup", dataDir, workers: 2,
      listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    }), 1, 45_000); // two more Node processes to start, on a machine the other tests load too
    const parent = p.pid;
    const workers: number[] = [];
    for (const name of await readdir("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      const status = await readFile(`/proc/${name}/status`, "utf8").catch(() => "");
      if (new RegExp(`^PPid:\\s+${parent}$`, "m").test(status)) {
        workers.push(Number(name));
        assert.deepEqual(ids(status, "Uid"), [nobody.uid, nobody.uid, nobody.uid, nobody.uid], `worker ${name}: no root id left`);
        assert.deepEqual(ids(status, "Gid"), [nogroup, nogroup, nogroup, nogroup]);
        assert.ok(!ids(status, "Groups").includes(0), "not in group root");
      }
    }
    assert.equal(workers.length, 2, "two SMTP workers");
    for (let i = 0; i < 2; i++) {
      const c = await SmtpClient.connect(p.port("mx"));
      await c.ehlo();
      assert.equal((await c.send("sender@example.org", ["postmaster@localhost"], `Subject: via a worker ${i}\r\n\r\nhello\r\n`)).code, 250);
      await c.quit();
    }
    await pollUntil(async () => {
      const n = await readdir(join(dataDir, "mail", "localhost", "postmaster", "new")).catch(() => [] as string[]);
      return n.length === 2 ? n : undefined;
    }, 15_000);
    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
  } finally {
    if (p) await stopPetrel(p);
    SmtpClient.closeAll();
    await cleanup();
  }
});

test("a data directory the user cannot write: exit 78 naming dataDir, the user's ids and the chown to run", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await reachableTempDir();
  try {
    const dataDir = join(dir, "data");
    await mkdir(dataDir, { mode: 0o755 }); // root's, as after an earlier run as root
    const r = await serveMustExit(await writeConfig(dir, { user: "nobody", dataDir, listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }] }));
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /petrel\.yaml:\d+:\d+: dataDir: got ".*\/data"; expected a directory the user Petrel runs as \(uid 65534, gid 65534\) can write: not writable: .*\/data \(as root: chown -R 65534:65534 .*\/data\)/);
    // Only the self-signed certificate, generated while still root (before the switch and the check), is there — given to the user.
    assert.deepEqual(await readdir(dataDir), ["tls"]);
    assert.equal((await stat(join(dataDir, "tls", "self-signed.key"))).uid, nobody.uid);
  } finally {
    await cleanup();
  }
});

test("as root with no user: and a listener on a public address: refused (78), saying how to configure one", async () => {
  const r = await serveFails({ listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }, { address: "0.0.0.0", port: 0, role: "submission" }] });
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /: user: missing; Petrel is started as root and listeners\[1\] listens on 0\.0\.0\.0 \(not loopback\): name an unprivileged user .*user: petrel.*CAP_NET_BIND_SERVICE/);
  assert.doesNotMatch(r.stdout, /"msg":"listening"/);
});

test("as root with no user: on loopback only: runs, with a one-line warning", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await reachableTempDir();
  let p: PetrelProcess | null = null;
  try {
    p = await servePetrel(await writeConfig(dir, { dataDir: join(dir, "data"), listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }] }), 1);
    const warnings = p.logs().filter((l) => l.level === 40 && /running as root/.test(String(l.msg)));
    assert.equal(warnings.length, 1, p.stdout());
    assert.equal(ids(await readFile(`/proc/${p.pid}/status`, "utf8"), "Uid")[0], 0);
    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
  } finally {
    if (p) await stopPetrel(p);
    await cleanup();
  }
});

test("an unknown user or group, and an owner the user cannot give files to: exit 78 naming each key", async () => {
  const unknown = await serveFails({ user: "petrel-no-such-user", listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }] });
  assert.equal(unknown.code, 78, unknown.stderr);
  assert.match(unknown.stderr, /petrel\.yaml:\d+:\d+: user: got "petrel-no-such-user"; expected a user of this system \(getent passwd found nothing\): create one, e\.g\. useradd --system/);

  const badGroup = await serveFails({ user: "nobody", group: "petrel-no-such-group", listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }] });
  assert.equal(badGroup.code, 78, badGroup.stderr);
  assert.match(badGroup.stderr, /group: got "petrel-no-such-group"; expected a group of this system/);

  const owner = await serveFails({ user: "nobody", delivery: { owner: { user: "mail" } }, listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }] });
  assert.equal(owner.code, 78, owner.stderr);
  assert.match(owner.stderr, /delivery\.owner\.user: got "mail"; expected the user Petrel runs as \(uid 65534\): only root can give files to another user/);
});
