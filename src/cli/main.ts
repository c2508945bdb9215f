#!/usr/bin/env -S node --max-semi-space-size=8
import { parseArgs } from "node:util";
import { ACCOUNTS_USAGE } from "./accounts-commands.ts";

/**
 * The `petrel` command: thin on purpose. It parses arguments and calls the
 * services; everything worth testing lives behind it. Each command's module
 * is imported when that command runs: `petrel serve` does not load the
 * diagnostics, nor `petrel queue summary` the server.
 */

const USAGE = `Usage: petrel <command> [options]

Commands:
  serve [--config FILE]      run the mail server (embedded default without --config)
  hash-password [ADDRESS]    read a password from stdin or a prompt; print the hash for the config's users: list
  domain|user|alias ...      manage local domains, users and aliases (below)
  queue list|show|summary|retry|hold|release|delete
                             inspect and manage the mail queue (petrel queue help)
  send --server HOST[:PORT] --from A --to B ...   compose and send a message (petrel send --help)
  dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519]
                             create a DKIM key and print the TXT record to publish
  dns DOMAIN [--check]       the DNS records DOMAIN needs (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT); --check
                             compares them with what the DNS answers
  tlsrpt summary [--mailbox ADDRESS] [--json]
                             the TLS reports (RFC 8460) other servers sent about this server's domains
  status [--json]            the running server: version, uptime, listeners, queue, certificates
  reload                     make the running server read its configuration again (as SIGHUP); prints
                             what was applied and what needs a restart
  check HOST[:PORT]          probe any SMTP server as a client would, and say what is wrong (petrel check --help)
  db migrate|status          the PostgreSQL schema of a cluster (storage.kind: postgres)
  doctor                     check this server's configuration, DNS, certificates and port 25 (petrel doctor --help)
  help                       this text

${ACCOUNTS_USAGE}`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve": {
      const { values } = parseArgs({ args: rest, options: { config: { type: "string", short: "c" } }, strict: true });
      const { serve } = await import("./serve.ts");
      return serve({ configPath: values.config });
    }
    case "hash-password": {
      const { values, positionals } = parseArgs({
        args: rest, allowPositionals: true, strict: true,
        options: { scram: { type: "boolean" }, config: { type: "string", short: "c" } },
      });
      if (positionals.length > 1) {
        process.stderr.write(`petrel hash-password: unexpected argument '${positionals[1]}'\n`);
        return 2;
      }
      const { hashPasswordCommand } = await import("./hash-password.ts");
      return hashPasswordCommand({ scram: values.scram ?? true, configPath: values.config, address: positionals[0] });
    }
    case "queue":
      return (await import("./queue-commands.ts")).queueCommand(rest, process);
    case "send":
      return (await import("./send.ts")).sendCommand(rest, process);
    case "dkim":
      return (await import("./dkim-command.ts")).dkimCommand(rest, process);
    case "dns":
      return (await import("./dns-command.ts")).dnsCommand(rest, process);
    case "tlsrpt":
      return (await import("./tlsrpt-command.ts")).tlsrptCommand(rest, process);
    case "status":
      return (await import("./status-command.ts")).statusCommand(rest, process);
    case "reload":
      return (await import("./reload-command.ts")).reloadCommand(rest, process);
    case "check":
      return (await import("./check-command.ts")).checkCommand(rest, process);
    case "doctor":
      return (await import("./doctor-command.ts")).doctorCommand(rest, process);
    case "db":
      return (await import("./db-command.ts")).dbCommand(rest, process);
    case "domain":
    case "user":
    case "alias":
      return (await import("./accounts-commands.ts")).accountsCommand([command, ...rest], process);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`petrel: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`petrel: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err && typeof err === "object" && "exitCode" in err ? Number(err.exitCode) : 1;
  },
);
