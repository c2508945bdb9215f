/**
 * Idle connections for the memory-per-connection scenario (bench-only):
 *
 *   node bench/idle-client.ts '{"host":"127.0.0.11","port":10025,"connections":2000,"timeoutMs":60000}'
 *
 * Opens `connections` connections (at most 200 handshakes in flight), reads
 * each greeting, sends EHLO and waits for its 250, then prints
 * {"ready":true,"open":N,"failed":F} and holds them until a line arrives on
 * stdin (or `holdMs`, default 30 s, passes), then closes them all and exits.
 */
import * as net from "node:net";

const opts = JSON.parse(process.argv[2] ?? "{}") as { host: string; port: number; connections: number; timeoutMs: number; holdMs?: number };
const sockets: net.Socket[] = [];
let failed = 0;
const failures: string[] = [];
const deadline = Date.now() + opts.timeoutMs;

function oneConnection(): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: opts.host, port: opts.port });
    let buf = "";
    let stage: "greeting" | "ehlo" | "done" = "greeting";
    const timer = setTimeout(() => fail("handshake timeout"), Math.max(1000, deadline - Date.now()));
    const fail = (why: string) => {
      if (stage === "done") return;
      stage = "done";
      clearTimeout(timer);
      failed++;
      if (failures.length < 5) failures.push(why);
      s.destroy();
      resolve();
    };
    s.setEncoding("latin1");
    s.on("error", (e) => fail(e.message));
    s.on("close", () => fail("closed by server"));
    s.on("data", (d: string) => {
      buf += d;
      // a complete reply ends with a line "NNN text" (no hyphen)
      if (!/(^|\n)\d{3}( [^\n]*)?\r?\n$/.test(buf)) return;
      const code = buf.slice(0, 3);
      buf = "";
      if (stage === "greeting") {
        if (code !== "220") return fail(`greeting ${code}`);
        stage = "ehlo";
        s.write("EHLO idle.bench.test\r\n");
      } else if (stage === "ehlo") {
        if (code !== "250") return fail(`EHLO ${code}`);
        stage = "done";
        clearTimeout(timer);
        sockets.push(s);
        resolve();
      }
    });
  });
}

let next = 0;
async function worker(): Promise<void> {
  while (next < opts.connections && Date.now() < deadline) {
    next++;
    await oneConnection();
  }
}
await Promise.all(Array.from({ length: Math.min(200, opts.connections) }, () => worker()));
process.stdout.write(JSON.stringify({ ready: true, open: sockets.length, failed, failures }) + "\n");

const finish = () => {
  for (const s of sockets) s.destroy();
  process.exit(0);
};
process.stdin.once("data", finish);
process.stdin.once("end", finish);
setTimeout(finish, opts.holdMs ?? 30_000).unref();
