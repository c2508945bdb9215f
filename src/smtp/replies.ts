import { reply, type Reply } from "./reply.ts";

/**
 * The replies the protocol engine gives, in one place so their codes can be
 * reviewed against the RFCs at a glance: RFC 5321 §4.2 for the basic code,
 * RFC 3463 (and the IANA registry) for the enhanced status code.
 */

export const ok = reply(250, "2.0.0", "Ok");
export const mailOk = reply(250, "2.1.0", "Ok");
export const rcptOk = reply(250, "2.1.5", "Ok");
export const startData = reply(354, undefined, "End data with <CR><LF>.<CR><LF>");
export const readyForTls = reply(220, "2.0.0", "Ready to start TLS");
export const authOk = reply(235, "2.7.0", "Authentication successful");
export const cannotVrfy = reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
export const help = reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
export function bye(hostname: string): Reply {
  return reply(221, "2.0.0", `${hostname} closing connection`);
}

// 4xx: try again later.
export const localError = reply(421, "4.3.0", "Error: internal error, closing connection");
export const tooManyErrors = reply(421, "4.7.0", "Error: too many errors, closing connection");
export const tooManyAuthFailures = reply(421, "4.7.0", "Error: too many failed authentication attempts, closing connection");
export const tooManyMessages = reply(421, "4.7.0", "Error: too many messages in one connection (MAILMAX), please reconnect");
export const lineNeverEnds = reply(421, "4.7.0", "Error: command line never ended, closing connection");
/** RFC 5321 §4.5.3.1.10: too many recipients is a temporary failure so the client sends the rest later. */
export const tooManyRecipients = reply(452, "4.5.3", "Error: too many recipients");

// 5xx: syntax and sequence (RFC 5321 §4.2.4, RFC 3463 X.5.x).
export const unknownCommand = reply(500, "5.5.2", "Error: command not recognized");
export const emptyCommand = reply(500, "5.5.2", "Error: empty command");
export const lineTooLong = reply(500, "5.5.6", "Error: command line too long");
export const nulInCommand = reply(500, "5.5.2", "Error: NUL character in command");
export const invalidUtf8 = reply(500, "5.5.2", "Error: command is not valid UTF-8");
export const bareLf = reply(500, "5.5.2", "Error: bare <LF> received; SMTP requires <CR><LF> line ends (RFC 5321 §2.3.8)");
export const bareCr = reply(500, "5.5.2", "Error: bare <CR> received; SMTP requires <CR><LF> line ends (RFC 5321 §2.3.8)");
export const notSmtp = reply(554, "5.5.0", "Error: this is an SMTP server, not a web or TLS endpoint; closing connection");
export const earlyTalker = reply(554, "5.5.0", "Error: improper command pipelining before the greeting; closing connection");
export const improperPipelining = reply(554, "5.5.0", "Error: improper use of SMTP command pipelining");
export function syntax(usage: string): Reply {
  return reply(501, "5.5.4", `Syntax: ${usage}`);
}
export function notImplemented(verb: string): Reply {
  return reply(502, "5.5.1", `Error: ${verb} not implemented`);
}
export function badSequence(what: string): Reply {
  return reply(503, "5.5.1", `Error: ${what}`);
}
export const needHelo = reply(503, "5.5.1", "Error: send HELO/EHLO first");
export const nestedMail = reply(503, "5.5.1", "Error: nested MAIL command");
export const needMail = reply(503, "5.5.1", "Error: need MAIL command");
export const needRcpt = reply(503, "5.5.1", "Error: need RCPT command");
export const alreadyTls = reply(503, "5.5.1", "Error: TLS already active");
export const transactionInProgress = reply(503, "5.5.1", "Error: MAIL transaction in progress");
/** BDAT where CHUNKING is hidden: its chunk cannot be skipped safely, so the session ends (as Postfix does). */
export const chunkingNotImplemented = reply(521, "5.5.1", "Error: command not implemented");

// Addresses and message content.
export function badAddress(reason: string): Reply {
  return reply(501, "5.1.7", `Bad address syntax: ${reason}`);
}
/** RFC 6531 §3.4, RFC 6533: non-ASCII address without SMTPUTF8. */
export const needSmtputf8 = reply(553, "5.6.7", "Error: non-ASCII address requires the SMTPUTF8 parameter");
export function sizeExceeded(limit: number): Reply {
  return reply(552, "5.3.4", `Error: message size exceeds fixed maximum message size (${limit} octets)`);
}
export const bareNewlineInData = reply(550, "5.5.2", "Error: message contains bare <CR> or <LF>; SMTP requires <CR><LF> line ends (RFC 5321 §2.3.8)");

// AUTH (RFC 4954 §6).
export const authNotEnabled = reply(503, "5.5.1", "Error: authentication not enabled");
export const encryptionRequired = reply(538, "5.7.11", "Encryption required for requested authentication mechanism; use STARTTLS first");
export const alreadyAuthenticated = reply(503, "5.5.1", "Error: already authenticated");
export const unknownMechanism = reply(504, "5.5.4", "Unrecognized authentication type");
export const cannotDecode = reply(501, "5.5.2", "Cannot decode response (expected base64)");
export const authCancelled = reply(501, "5.0.0", "Authentication cancelled");
export const authFailed = reply(535, "5.7.8", "Authentication credentials invalid");
export const authMalformed = reply(501, "5.5.2", "Malformed authentication exchange");
export const authRequired = reply(530, "5.7.0", "Authentication required");
export const needTlsThenAuth = reply(530, "5.7.0", "Authentication required: use STARTTLS, then AUTH");
