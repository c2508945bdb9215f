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

const CR = 0x0d;

/**
 * A command line (with its line end) that does not end in CRLF, or holds a CR
 * elsewhere: RFC 5321 §2.3.8 allows no bare CR or LF in the dialogue, and
 * accepting them is what SMTP smuggling exploits.
 */
export function lineEndProblem(line: Buffer): "bare LF" | "bare CR" | null {
  const n = line.length;
  if (n < 2 || line[n - 2] !== CR) return "bare LF";
  const cr = line.indexOf(CR);
  if (cr !== n - 2) return "bare CR";
  return null;
}
