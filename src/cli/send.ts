/**
 * `petrel send`: compose a message and submit it to a server, e.g.
 *
 *   petrel send --server smtp.example.com:587 --user me@example.com \
 *     --from me@example.com --to you@example.org --subject Hi --text "Hello"
 *
 * Thin: parses arguments, reads the password and files, calls `send()` from
 * src/client/, prints the server's reply — or `explain()`'s plain words.
 * The password never comes from argv (ps and shell history would see it):
 * --password-file, else $PETREL_PASSWORD, else a prompt without echo when
 * stdin is a terminal.
 *
 * Exit codes: 0 sent to every recipient; 1 not sent, or some recipients
 * refused (the others got it); 2 usage error.
 */
import { PasswordUnavailable, readPassword } from "./prompt.ts";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { send } from "../client/send.ts";
import { explain } from "../client/explain.ts";
import { replyText } from "../smtp/reply.ts";

export interface SendIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
  readonly env?: Record<string, string | undefined>;
}

export const SEND_USAGE = `Usage: petrel send --server HOST[:PORT] --from ADDRESS --to ADDRESS [options]
  --server HOST[:PORT]   the server (port 587 by default; 465 means implicit TLS)
  --tls MODE             starttls (default), implicit (default on port 465), or none (tests only)
  --user NAME            log in as NAME; the password comes from --password-file FILE,
                         $PETREL_PASSWORD, or a prompt (never from the command line)
  --from ADDRESS         sender ("Name <addr>" or addr)
  --to/--cc/--bcc ADDR   recipients (repeat as needed; Bcc is not shown in the message)
  --subject TEXT         subject
  --text TEXT | --text-file FILE     plain-text body
  --html-file FILE       HTML body (with a text body: both, as alternatives)
  --attach FILE          attach a file (repeat as needed)
  --helo NAME            name to give in EHLO (default: this machine's host name)
  --ca FILE              also trust this CA certificate (PEM)
  --insecure             do not verify the server's certificate (testing only)
`;

class UsageError extends Error {}

export async function sendCommand(args: readonly string[], io: SendIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        server: { type: "string", short: "s" },
        tls: { type: "string" },
        user: { type: "string", short: "u" },
        "password-file": { type: "string" },
        from: { type: "string", short: "f" },
        to: { type: "string", short: "t", multiple: true },
        cc: { type: "string", multiple: true },
        bcc: { type: "string", multiple: true },
        subject: { type: "string" },
        text: { type: "string" },
        "text-file": { type: "string" },
        "html-file": { type: "string" },
        attach: { type: "string", short: "a", multiple: true },
        helo: { type: "string" },
        ca: { type: "string" },
        insecure: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
    if (values.help) {
      io.stdout.write(SEND_USAGE);
      return 0;
    }
    if (!values.server) throw new UsageError("which server? Give --server HOST[:PORT]");
    if (!values.from) throw new UsageError("give the sender with --from ADDRESS");
    if (!values.to?.length && !values.cc?.length && !values.bcc?.length) throw new UsageError("give at least one recipient with --to (or --cc, --bcc)");
    if (values.tls !== undefined && !["starttls", "implicit", "none"].includes(values.tls)) {
      throw new UsageError(`--tls must be starttls, implicit or none, not "${values.tls}"`);
    }
    if (values.text !== undefined && values["text-file"] !== undefined) throw new UsageError("give --text or --text-file, not both");
    if (values["password-file"] !== undefined && values.user === undefined) throw new UsageError("--password-file needs --user");
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr.write(`petrel send: ${(err as Error).message}\n\n${SEND_USAGE}`);
      return 2;
    }
    throw err;
  }

  try {
    const password = values.user !== undefined ? await readPassword(values["password-file"], io, "nothing was sent") : undefined;
    const text = values["text-file"] !== undefined ? await readFile(values["text-file"], "utf8") : values.text;
    const html = values["html-file"] !== undefined ? await readFile(values["html-file"], "utf8") : undefined;
    const attachments = [];
    for (const path of values.attach ?? []) {
      attachments.push({ content: await readFile(path), filename: basename(path) });
    }
    const ca = values.ca !== undefined ? await readFile(values.ca, "utf8") : undefined;
    const result = await send({
      server: values.server,
      tls: values.tls as "starttls" | "implicit" | "none" | undefined,
      user: values.user,
      password,
      insecure: values.insecure ?? false,
      ca,
      heloName: values.helo,
      from: values.from,
      to: values.to,
      cc: values.cc,
      bcc: values.bcc,
      subject: values.subject,
      text,
      html,
      attachments,
    });
    io.stdout.write(`Sent: ${replyText(result.response)}\n`);
    for (const r of result.rejected) {
      io.stderr.write(`Not sent to ${r.address}: ${replyText(r.reply)}\n`);
    }
    return result.rejected.length > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof PasswordUnavailable) {
      io.stderr.write(`petrel send: ${err.message}\n`);
      return 2;
    }
    io.stderr.write(`petrel send: ${explain(err)}\n`);
    return 1;
  }
}


