import { readFile } from "node:fs/promises";
import { StringDecoder } from "node:string_decoder";

/**
 * Reading a secret from a person: never from argv (where `ps` and shell
 * history see it), and never echoed.
 */

export interface PromptIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  readonly stderr: { write(text: string): unknown };
}

/** Prompt on stderr and read one line from a terminal in raw mode, echoing nothing. */
export function promptHidden(io: PromptIo, prompt: string, interrupted: () => Error): Promise<string> {
  const input = io.stdin;
  io.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder("utf8");
    let text = "";
    input.setRawMode?.(true);
    const finish = (err: Error | null) => {
      input.off("data", onData);
      input.setRawMode?.(false);
      input.pause();
      io.stderr.write("\n");
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: Buffer | string) => {
      const s = typeof chunk === "string" ? chunk : decoder.write(chunk);
      let i = 0;
      for (const ch of s) {
        i += ch.length;
        if (ch === "\r" || ch === "\n") {
          // A pasted "pw\rpw\r" arrives in one chunk: keep the rest for the next prompt.
          finish(null);
          if (i < s.length) input.unshift(Buffer.from(s.slice(i), "utf8"));
          return;
        }
        if (ch === "\u0003") return finish(interrupted()); // Ctrl-C
        if (ch === "\u0004") {
          if (text === "") return finish(interrupted()); // Ctrl-D on an empty line
          continue;
        }
        if (ch === "\u007f" || ch === "\b") {
          text = [...text].slice(0, -1).join("");
          continue;
        }
        if (ch === "\u0015") {
          text = ""; // Ctrl-U
          continue;
        }
        if (ch < " ") continue; // other control characters (escape sequences' ESC among them)
        text += ch;
      }
    };
    input.on("data", onData);
    input.resume();
  });
}

/** The first line of a non-terminal stream (without its CR LF / LF). */
export function readFirstLine(input: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder("utf8");
    let text = "";
    const done = (value: string) => {
      input.off("data", onData);
      input.off("end", onEnd);
      input.off("error", onError);
      input.pause();
      resolve(value.endsWith("\r") ? value.slice(0, -1) : value);
    };
    const onData = (chunk: Buffer | string) => {
      text += typeof chunk === "string" ? chunk : decoder.write(chunk);
      const nl = text.indexOf("\n");
      if (nl >= 0) done(text.slice(0, nl));
    };
    const onEnd = () => done(text + decoder.end());
    const onError = (err: Error) => {
      input.off("data", onData);
      input.off("end", onEnd);
      reject(err);
    };
    input.on("data", onData);
    input.on("end", onEnd);
    input.on("error", onError);
    input.resume();
  });
}

/** No password could be had: an empty file, no terminal to ask on, Ctrl-C at the prompt. */
export class PasswordUnavailable extends Error {
  override readonly name = "PasswordUnavailable";
}

/**
 * A login's password for `--user`: the first line of `file` (--password-file), else
 * $PETREL_PASSWORD, else a prompt without echo when stdin is a terminal.
 * `nothingDone` ends the message when the person interrupts ("nothing was sent").
 */
export async function readPassword(file: string | undefined, io: PromptIo & { readonly env?: Record<string, string | undefined> }, nothingDone: string): Promise<string> {
  if (file !== undefined) {
    const text = await readFile(file, "utf8");
    const line = text.split(/\r?\n/)[0];
    if (line === "") throw new PasswordUnavailable(`the password file ${file} is empty`);
    return line;
  }
  const env = io.env?.PETREL_PASSWORD;
  if (env !== undefined && env !== "") return env;
  if (!io.stdin.isTTY) {
    throw new PasswordUnavailable("--user needs a password: give --password-file FILE or set PETREL_PASSWORD (no terminal to ask on)");
  }
  return promptHidden(io, "Password: ", () => new PasswordUnavailable(`interrupted; ${nothingDone}`));
}
