/**
 * `petrel check HOST[:PORT]`: probe an SMTP server as a client would and
 * report each finding OK / INFO / WARN / FAIL with what to do
 * (src/diagnostics/smtp-check.ts). Port 25 by default, where a domain's MX
 * is looked up; 465 means TLS from the first byte.
 *
 * Exit statuses: 0 nothing wrong, 1 warnings, 2 failures, 64 usage error.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { defaultHeloName, parseServer } from "../client/send.ts";
import { ConfigError } from "../config/config-error.ts";
import { loadConfig } from "../config/load.ts";
import { createResolver } from "../dns/resolver.ts";
import { exitStatus, formatFindings } from "../diagnostics/finding.ts";
import { checkSmtpServer } from "../diagnostics/smtp-check.ts";
import { PasswordUnavailable, readPassword } from "./prompt.ts";
import type { SendIo } from "./send.ts";

export const CHECK_USAGE = `Usage: petrel check HOST[:PORT] [options]
  HOST is a mail domain (its MX is looked up on port 25, the default), a host name or an address
  --tls starttls|implicit  how TLS starts (default: implicit on port 465, else STARTTLS)
  --user NAME              also try logging in (over TLS only); the password comes from
                           --password-file FILE, $PETREL_PASSWORD or a prompt, never the command line
  --timeout SECONDS        for connecting and for each reply (default 20)
  --dns SERVER             ask this DNS server (repeatable; default: --config's dns.servers, else the system's)
  --config FILE            take dns.servers and outbound.heloName from this configuration
  --helo NAME              the name to give in EHLO (default: this machine's host name)
  --ca FILE                also trust this CA certificate (PEM) when judging the certificate
  --json                   the findings as JSON
Exit status: 0 all good, 1 warnings, 2 failures, 64 usage error.
`;

const USAGE_ERROR = 64;

export async function checkCommand(argv: readonly string[], io: SendIo): Promise<number> {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv], allowPositionals: true, strict: true,
      options: {
        tls: { type: "string" }, user: { type: "string", short: "u" }, "password-file": { type: "string" },
        timeout: { type: "string" }, dns: { type: "string", multiple: true }, config: { type: "string", short: "c" },
        helo: { type: "string" }, ca: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    return usage(io, (err as Error).message);
  }
  if (values.help) {
    io.stdout.write(CHECK_USAGE);
    return 0;
  }
  if (positionals.length !== 1) return usage(io, positionals.length === 0 ? "which server? Give HOST[:PORT]" : `one server at a time, not ${positionals.join(" ")}`);
  if (values.tls !== undefined && values.tls !== "starttls" && values.tls !== "implicit") return usage(io, `--tls must be starttls or implicit, not "${values.tls}"`);
  const timeout = values.timeout === undefined ? 20 : Number(values.timeout);
  if (!(timeout > 0 && timeout <= 600)) return usage(io, `--timeout must be a number of seconds between 0 and 600, not "${values.timeout}"`);
  if (values["password-file"] !== undefined && values.user === undefined) return usage(io, "--password-file needs --user");
  let target;
  try {
    target = parseServer(positionals[0], values.tls as "starttls" | "implicit" | undefined, 25);
  } catch (err) {
    return usage(io, (err as Error).message);
  }

  let servers = values.dns ?? [];
  let heloName = values.helo;
  if (values.config !== undefined) {
    try {
      const config = await loadConfig(values.config, { checkFiles: false });
      if (servers.length === 0) servers = config.dns.servers;
      heloName ??= config.outbound.heloName ?? config.hostname;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      io.stderr.write(`petrel check: the configuration has errors.\n${err.message}\n`);
      return 78;
    }
  }
  let resolver;
  try {
    resolver = createResolver({ servers });
  } catch (err) {
    return usage(io, `--dns: ${(err as Error).message}`);
  }
  try {
    const password = values.user !== undefined ? await readPassword(values["password-file"], io, "nothing was checked") : undefined;
    const ca = values.ca !== undefined ? await readFile(values.ca, "utf8") : undefined;
    if (!values.json) io.stderr.write(`Checking ${target.host} port ${target.port}${target.tls === "implicit" ? " (TLS from the first byte)" : ""} …\n`);
    const report = await checkSmtpServer({ host: target.host, port: target.port, implicitTls: target.tls === "implicit" }, {
      resolver,
      heloName: heloName ?? defaultHeloName(),
      timeoutMs: timeout * 1000,
      ...(values.user !== undefined ? { login: { user: values.user, password: password! } } : {}),
      ...(ca !== undefined ? { ca } : {}),
    });
    io.stdout.write(values.json ? JSON.stringify(report, null, 2) + "\n" : formatFindings(report.findings));
    return exitStatus(report.findings);
  } catch (err) {
    if (err instanceof PasswordUnavailable) return usage(io, err.message);
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT" || e.code === "EACCES") {
      io.stderr.write(`petrel check: cannot read ${e.path ?? "a file"}: ${e.code === "ENOENT" ? "no such file" : "permission denied"}\n`);
      return USAGE_ERROR;
    }
    throw err;
  } finally {
    resolver.close();
  }
}

function usage(io: SendIo, message: string): number {
  io.stderr.write(`petrel check: ${message}\n\n${CHECK_USAGE}`);
  return USAGE_ERROR;
}
