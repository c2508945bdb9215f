/**
 * `petrel doctor`, the running server: is Petrel running (it answers on its
 * control socket), is every configured listener bound, and does each one
 * answer a client with a greeting.
 */
import { isIP } from "node:net";
import type { ServerStatus } from "../admin/server-status.ts";
import { explain } from "../client/explain.ts";
import { SmtpConnection } from "../client/smtp-connection.ts";
import type { Config } from "../config/schema.ts";
import { formatAge } from "../queue/queue-report.ts";
import { replyText } from "../smtp/reply.ts";
import { fail, ok, type Finding } from "./finding.ts";
import { hostPort } from "../server/listener-sockets.ts";

export interface RunningServerOptions {
  readonly timeoutMs: number;
  readonly heloName: string;
  /** How the CLI reached the server, for the message when nothing answers. */
  readonly controlSocket: string;
}

export async function runningServer(config: Config, status: ServerStatus | null, options: RunningServerOptions): Promise<Finding[]> {
  if (!status) {
    return [fail("server", `Petrel is not running: nothing answers on ${options.controlSocket}, so no listener takes mail`, "start it (petrel serve --config FILE, or systemctl start petrel) and run petrel doctor again")];
  }
  const out: Finding[] = [ok("server", `Petrel ${status.version} is running as ${status.hostname} (pid ${status.pid}), up ${formatAge(status.uptimeSeconds * 1000)}`)];
  const unmatched = [...status.listeners];
  for (const l of config.listeners) {
    const i = unmatched.findIndex((b) => b.role === l.role && sameAddress(b.address, l.address) && (l.port === 0 || b.port === l.port));
    if (i === -1) {
      out.push(fail("listener", `${hostPort(l.address, l.port)} (${l.role}) is configured but not bound by the running server`, "the server was started with another configuration: restart it with this one (petrel serve --config FILE)"));
      continue;
    }
    const [bound] = unmatched.splice(i, 1);
    out.push(await answers(bound, options));
  }
  return out;
}

/** Connect to a bound listener as a client would: greeting (after the TLS handshake on an implicit-TLS one), EHLO, QUIT. */
async function answers(l: ServerStatus["listeners"][number], options: RunningServerOptions): Promise<Finding> {
  const host = l.address === "0.0.0.0" ? "127.0.0.1" : l.address === "::" ? "::1" : l.address;
  const where = `${hostPort(l.address, l.port)} (${l.role})`;
  try {
    const c = await SmtpConnection.connect({
      host, port: l.port,
      tls: l.role === "submissions" ? "implicit" : "none",
      verifyCertificate: false,
      heloName: options.heloName,
      timeouts: { connect: options.timeoutMs, greeting: options.timeoutMs, command: options.timeoutMs },
    });
    const greeting = replyText(c.greeting);
    await c.quit();
    return ok("listener", `${where} answers: ${greeting}`);
  } catch (err) {
    return fail("listener", `${where} is bound but does not answer properly: ${explain(err)}`, "look at Petrel's log; a firewall on this machine or connection limits (limits.connections) may be in the way");
  }
}



/** The same IP address, however written ("::1" and "0:0:0:0:0:0:0:1"). */
function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  if (isIP(a) !== 6 || isIP(b) !== 6) return false;
  return new URL(`http://[${a}]/`).hostname === new URL(`http://[${b}]/`).hostname;
}
