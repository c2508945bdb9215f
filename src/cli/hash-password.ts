import { hashPassword, scramVerifier } from "../accounts/password.ts";
import { promptHidden, readFirstLine } from "./prompt.ts";

/**
 * `petrel hash-password`: the password comes from stdin (one line) or an
 * interactive prompt, never from argv, where `ps` and shell history see it.
 */
export async function hashPasswordCommand(options: { scram: boolean }): Promise<number> {
  const password = await readPassword();
  if (password === "") {
    process.stderr.write("petrel: empty password refused\n");
    return 2;
  }
  process.stdout.write(`password: "${await hashPassword(password)}"\n`);
  if (options.scram) process.stdout.write(`scram: "${scramVerifier(password)}"\n`);
  return 0;
}

async function readPassword(): Promise<string> {
  // On a terminal: a prompt that echoes nothing. Otherwise the first line of stdin.
  if (process.stdin.isTTY) return promptHidden(process, "Password: ", () => new Error("interrupted"));
  return readFirstLine(process.stdin);
}
