import {
  DataCursor, encodePacket, MACRO_STAGE_COMMAND, MILTER_VERSION, MilterProtocolError, SMFIC_OPTNEG,
  SMFIF_ADDHDRS, SMFIF_ADDRCPT, SMFIF_ADDRCPT_PAR, SMFIF_CHGBODY, SMFIF_CHGFROM, SMFIF_CHGHDRS, SMFIF_DELRCPT, SMFIF_QUARANTINE, SMFIF_SETSYMLIST,
  SMFIP_HDR_LEADSPC, SMFIP_NOBODY, SMFIP_NOCONNECT, SMFIP_NODATA, SMFIP_NOEOH, SMFIP_NOHDRS, SMFIP_NOHELO, SMFIP_NOMAIL,
  SMFIP_NORCPT, SMFIP_NOUNKNOWN, SMFIP_NR_BODY, SMFIP_NR_CONN, SMFIP_NR_DATA, SMFIP_NR_EOH, SMFIP_NR_HDR, SMFIP_NR_HELO,
  SMFIP_NR_MAIL, SMFIP_NR_RCPT, SMFIP_NR_UNKN, SMFIP_SKIP, type Packet,
} from "./protocol.ts";

/**
 * SMFIC_OPTNEG: the MTA offers the actions a filter may take and the protocol
 * steps it may leave out or leave unanswered; the filter answers with the
 * subset it wants, and optionally the macros it wants at each stage.
 *
 * Offered actions: add, change, insert and delete header fields, add and
 * delete recipients, quarantine, and macro lists. Not offered:
 *   - SMFIF_CHGBODY (replace body): the body is already streamed to the spool
 *     when the filter answers; replacing it would mean a second copy of every
 *     message on disk before the 250. A libmilter filter that needs it
 *     closes the connection at negotiation, and the milter's default action
 *     applies; one that sends SMFIR_REPLBODY anyway breaks the protocol
 *     there, with the same result.
 *   - SMFIF_CHGFROM and SMFIF_ADDRCPT_PAR: a check's result has no place
 *     for a new reverse-path or for recipient parameters.
 * Not offered as a step: SMFIP_RCPT_REJ (recipients refused by an earlier
 * check never reach later ones).
 */
export const OFFERED_ACTIONS = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_QUARANTINE | SMFIF_SETSYMLIST;

export const OFFERED_STEPS =
  SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH |
  SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP |
  SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_HDR |
  SMFIP_HDR_LEADSPC;

const ACTION_NAMES: readonly [number, string][] = [
  [SMFIF_ADDHDRS, "ADDHDRS"], [SMFIF_CHGBODY, "CHGBODY"], [SMFIF_ADDRCPT, "ADDRCPT"], [SMFIF_DELRCPT, "DELRCPT"],
  [SMFIF_CHGHDRS, "CHGHDRS"], [SMFIF_QUARANTINE, "QUARANTINE"], [SMFIF_CHGFROM, "CHGFROM"], [SMFIF_ADDRCPT_PAR, "ADDRCPT_PAR"],
  [SMFIF_SETSYMLIST, "SETSYMLIST"],
];

export interface Negotiated {
  readonly version: number;
  /** SMFIF_* the filter may use (what it asked for, within what was offered). */
  readonly actions: number;
  /** Actions it asked for beyond the offer (names), for the log. */
  readonly unoffered: readonly string[];
  /** SMFIP_* the filter asked for (steps to skip, steps it will not answer, leading space). */
  readonly steps: number;
  /** Macro names the filter wants, by the command they go with (SMFIR_SETSYMLIST); braces removed. */
  readonly macros: ReadonlyMap<string, readonly string[]>;
}

export function optionNegotiation(): Buffer {
  return encodePacket(SMFIC_OPTNEG, { uint32: MILTER_VERSION }, { uint32: OFFERED_ACTIONS }, { uint32: OFFERED_STEPS });
}

/** The filter's SMFIC_OPTNEG answer. */
export function parseNegotiation(packet: Packet): Negotiated {
  if (packet.code !== SMFIC_OPTNEG) throw new MilterProtocolError(`expected the option negotiation reply, got "${packet.code}"`);
  const c = new DataCursor(packet.data, "option negotiation");
  const version = c.uint32();
  const actions = c.uint32();
  const steps = c.uint32();
  // Version 2 is the oldest that Sendmail 8.11+ and Postfix still speak.
  if (version < 2 || version > MILTER_VERSION) throw new MilterProtocolError(`filter speaks protocol version ${version}; Petrel speaks 2 to ${MILTER_VERSION}`);
  // rspamd asks for every action it knows whatever was offered (it ORs its own mask in); a filter that
  // then uses one Petrel did not offer breaks the protocol at that point (answers.ts).
  const unoffered = ACTION_NAMES.filter(([bit]) => (actions & ~OFFERED_ACTIONS & bit) !== 0).map(([, n]) => n);
  const macros = new Map<string, readonly string[]>();
  while (c.remaining > 0) {
    const stage = c.uint32();
    const list = c.string();
    const command = MACRO_STAGE_COMMAND[stage];
    if (command === undefined) continue; // an unknown stage: libmilter and Postfix ignore it too
    macros.set(command, list.split(/[\s,]+/).filter(Boolean).map(macroName));
  }
  // Steps Petrel did not offer (SMFIP_RCPT_REJ) are dropped: those events simply never come.
  return { version, actions: actions & OFFERED_ACTIONS, unoffered, steps: steps & OFFERED_STEPS, macros };
}

/** "{auth_authen}" and "auth_authen" name the same macro; single letters ("i", "j") stand alone. */
export function macroName(name: string): string {
  return name.startsWith("{") && name.endsWith("}") ? name.slice(1, -1) : name;
}
