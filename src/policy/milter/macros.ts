import { encodePacket, SMFIC_BODY, SMFIC_BODYEOB, SMFIC_CONNECT, SMFIC_DATA, SMFIC_EOH, SMFIC_HEADER, SMFIC_HELO, SMFIC_MACRO, SMFIC_MAIL, SMFIC_RCPT, type Field } from "./protocol.ts";

/**
 * Sendmail macros (SMFIC_MACRO): named facts the MTA sends before each
 * step, which filters use for logging and decisions — OpenDKIM reads
 * {daemon_name} and {auth_authen} to decide whether to sign, rspamd reads
 * `i` for its queue id and {auth_authen} for authenticated senders.
 *
 * The defaults follow Postfix's milter_*_macros, plus {client_addr},
 * {client_name}, {client_port} and {if_addr} at connect. A filter that sends
 * SMFIR_SETSYMLIST lists gets exactly the macros it named, where known.
 *
 * Petrel's values:
 *   j              the server's hostname
 *   {daemon_name}  the listener's role: "mx", "submission", "submissions"
 *                  (Sendmail's DaemonPortOptions Name, e.g. OpenDKIM's MTA setting)
 *   i              the queue id, known from DATA on (the intake opens the
 *                  message in the spool then), so never at MAIL or RCPT
 *   v              "Petrel"
 */

/** Every macro Petrel can give, by name without braces; a value is absent when not known (yet). */
export interface MacroValues {
  readonly [name: string]: string | undefined;
}

const DEFAULTS: Readonly<Record<string, readonly string[]>> = {
  [SMFIC_CONNECT]: ["j", "_", "v", "daemon_name", "daemon_addr", "daemon_port", "if_addr", "client_addr", "client_port", "client_name"],
  [SMFIC_HELO]: ["tls_version", "cipher"],
  [SMFIC_MAIL]: ["i", "auth_type", "auth_authen", "mail_addr"],
  [SMFIC_RCPT]: ["i", "rcpt_addr"],
  [SMFIC_DATA]: ["i"],
  [SMFIC_EOH]: ["i"],
  [SMFIC_BODYEOB]: ["i"],
};

/** Headers take the end-of-header list, body chunks the end-of-message list (as Postfix sends them). */
const LIST_OF: Readonly<Record<string, string>> = { [SMFIC_HEADER]: SMFIC_EOH, [SMFIC_BODY]: SMFIC_BODYEOB };

/** The SMFIC_MACRO packet for `command`, or none when there is nothing to send. */
export function macroPacket(command: string, values: MacroValues, requested: ReadonlyMap<string, readonly string[]>): Buffer | undefined {
  const list = LIST_OF[command] ?? command;
  const names = requested.get(list) ?? DEFAULTS[list] ?? [];
  const fields: Field[] = [];
  for (const name of names) {
    const value = values[name];
    if (value === undefined || value === "") continue;
    fields.push({ string: name.length === 1 ? name : `{${name}}` }, { string: value });
  }
  if (fields.length === 0) return undefined;
  return encodePacket(SMFIC_MACRO, { raw: Buffer.from(command, "latin1") }, ...fields);
}
