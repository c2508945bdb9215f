/**
 * The client side of SMTP AUTH (RFC 4954) over a command channel:
 * SCRAM-SHA-256 (RFC 7677, the server's signature verified), PLAIN
 * (RFC 4616, with an initial response) and LOGIN, in the caller's order of
 * preference among what the server offers.
 */
import type { Reply } from "../smtp/reply.ts";
import { ScramSha256Client } from "./scram-client.ts";
import { SmtpClientError } from "./smtp-error.ts";

export interface AuthExchange {
  /** Mechanisms the server offers (upper case). */
  offered: readonly string[];
  encrypted: boolean;
  host: string;
  port: number;
  user: string;
  password: string;
  preferred: readonly string[];
  /** Send one line, get the reply. */
  command(line: string): Promise<Reply>;
  /** The error for a refusal (e.g. 535). */
  refused(r: Reply): SmtpClientError;
  /** Drop the connection (the server could not be trusted). */
  close(): void;
}

export async function authenticate(a: AuthExchange): Promise<void> {
  const { offered, host, port, user, password, preferred, command } = a;
  if (offered.length === 0) {
    throw new SmtpClientError("auth", "AUTH", `${host} port ${port} offers no authentication on this ${a.encrypted ? "" : "unencrypted "}connection`, { host, port });
  }
  const mech = preferred.map((m) => m.toUpperCase()).find((m) => offered.includes(m));
  if (!mech) {
    throw new SmtpClientError("auth", "AUTH", `no authentication mechanism in common (the server offers ${offered.join(", ")})`, { host, port });
  }
  const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
  const fail = a.refused;
  if (mech === "PLAIN") {
    const response = b64(`\0${user}\0${password}`);
    let r = await command(`AUTH PLAIN ${response}`);
    if (r.code === 334) r = await command(response);
    if (r.code !== 235) throw fail(r);
  } else if (mech === "LOGIN") {
    let r = await command("AUTH LOGIN");
    if (r.code === 334) r = await command(b64(user));
    if (r.code === 334) r = await command(b64(password));
    if (r.code !== 235) throw fail(r);
  } else if (mech === "SCRAM-SHA-256") {
    let scram: ScramSha256Client;
    try {
      scram = new ScramSha256Client(user, password);
    } catch (err) {
      throw new SmtpClientError("auth", "AUTH", `cannot use SCRAM-SHA-256: ${(err as Error).message}`, { host, port, cause: err });
    }
    let r = await command(`AUTH SCRAM-SHA-256 ${b64(scram.clientFirst())}`);
    if (r.code !== 334) throw fail(r);
    let final: Buffer;
    try {
      final = scram.clientFinal(Buffer.from(r.lines[0], "base64"));
    } catch (err) {
      await command("*").catch(() => undefined);
      throw new SmtpClientError("auth", "AUTH", `the server's SCRAM challenge is invalid: ${(err as Error).message}`, { host, port, cause: err });
    }
    r = await command(b64(final));
    if (r.code === 334) {
      if (!scram.verifyServerFinal(Buffer.from(r.lines[0], "base64"))) {
        await command("*").catch(() => undefined);
        throw new SmtpClientError("auth", "AUTH", "the server could not prove it knows the password (wrong SCRAM server signature): it may not be the server you meant", { host, port });
      }
      r = await command("");
    } else if (r.code === 235) {
      a.close();
      throw new SmtpClientError("auth", "AUTH", "the server accepted SCRAM-SHA-256 without proving it knows the password", { host, port, reply: r });
    }
    if (r.code !== 235) throw fail(r);
  } else {
    throw new SmtpClientError("auth", "AUTH", `mechanism ${mech} is not supported by Petrel's client`, { host, port });
  }
}
