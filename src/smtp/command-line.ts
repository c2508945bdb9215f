/**
 * Splitting a command line into verb and argument (RFC 5321 §4.1.1): the
 * verb is case-insensitive and separated from its argument by one space.
 */

export interface CommandLine {
  /** Upper-cased verb, e.g. "MAIL". */
  readonly verb: string;
  /** Everything after the verb and its separating space (may be ""). */
  readonly arg: string;
}

export function splitCommand(line: string): CommandLine {
  const sp = line.indexOf(" ");
  if (sp === -1) return { verb: line.toUpperCase(), arg: "" };
  return { verb: line.slice(0, sp).toUpperCase(), arg: line.slice(sp + 1) };
}

/**
 * For "MAIL FROM:" and "RCPT TO:": the keyword must follow the verb; Postfix
 * (and much of the world) tolerates a space after the colon, so do we.
 * Returns the text starting at "<", or null when the keyword is missing.
 */
export function afterKeyword(arg: string, keyword: string): string | null {
  if (arg.length < keyword.length || arg.slice(0, keyword.length).toUpperCase() !== keyword) return null;
  let rest = arg.slice(keyword.length);
  if (rest.startsWith(" ")) rest = rest.slice(1);
  return rest;
}
