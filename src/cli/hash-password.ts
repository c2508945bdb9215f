import { hashPassword, scramVerifier } from "../accounts/password.ts";
import { promptHidden, readFirstLine } from "./prompt.ts";
import { checkPassword } from "../accounts/password-policy.ts";
import { loadConfig } from "../config/load.ts";
import { ConfigError } from "../config/config-error.ts";

/**
 * `petrel hash-password [ADDRESS]`: the password comes from stdin (one line)
 * or an interactive prompt, never from argv, where `ps` and shell history see
 * it. It must pass the password policy (passwords.minLength of --config, and
 * not ADDRESS or its local part when given) as for `petrel user add`.
 */
export async function hashPasswordCommand(options: { scram: boolean; configPath?: string; address?: string }): Promise<number> {
  let config;
  try {
    config = await loadConfig(options.configPath, { checkFiles: false });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`petrel: the configuration has errors.\n${err.message}\n`);
    return 78;
  }
  const password = await readPassword();
  if (password === "") {
    process.stderr.write("petrel: empty password refused\n");
    return 2;
  }
  const check = checkPassword(password, config.passwords, options.address);
  if (!check.ok) {
    process.stderr.write(`petrel: password refused: ${check.reason}\n`);
    return 1;
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
