import { fixedReply, reply, type Reply } from "./reply.ts";

/**
 * The replies the protocol engine gives, in one place so their codes can be
 * reviewed against the RFCs at a glance: RFC 5321 §4.2 for the basic code,
 * RFC 3463 (and the IANA registry) for the enhanced status code.
 */

export const ok = fixedReply(250, "2.0.0", "Ok");
export const mailOk = fixedReply(250, "2.1.0", "Ok");
export const rcptOk = fixedReply(250, "2.1.5", "Ok");
export const startData = fixedReply(354, undefined, "End data with <CR><LF>.<CR><LF>");
export const readyForTls = fixedReply(220, "2.0.0", "Ready to start TLS");
export const authOk = fixedReply(235, "2.7.0", "Authentication successful");
export const cannotVrfy = fixedReply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
export const help = fixedReply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
export function bye(hostname: string): Reply {
  return reply(221, "2.0.0", `${hostname} closing connection`);
}

// 4xx: try again later.
export const localError = fixedReply(421, "4.3.0", "Error: internal error, closing connection");
export const tooManyErrors = fixedReply(421, "4.7.0", "Error: too many errors, closing connection");
export const tooManyAuthFailures = fixedReply(421, "4.7.0", "Error: too many failed authentication attempts, closing connection");
export const tooManyMessages = fixedReply(421, "4.7.0", "Error: too many messages in one connection (MAILMAX), please reconnect");
export const lineNeverEnds = fixedReply(421, "4.7.0", "Error: command line never ended, closing connection");
/** RFC 5321 §4.5.3.1.10: too many recipients is a temporary failure so the client sends the rest later. */
export const tooManyRecipients = fixedReply(452, "4.5.3", "Error: too many recipients");

// 5xx: syntax and sequence (RFC 5321 §4.2.4, RFC 3463 X.5.x).
export const unknownCommand = fixedReply(500, "5.5.2", "Error: command not recognized");
export const emptyCommand = fixedReply(500, "5.5.2", "Error: empty command");
export const lineTooLong = fixedReply(500, "5.5.6", "Error: command line too long");
export const nulInCommand = fixedReply(500, "5.5.2", "Error: NUL character in command");
export const invalidUtf8 = fixedReply(500, "5.5.2", "Error: command is not valid UTF-8");
export const bareLf = fixedReply(500, "5.5.2", "Error: bare <LF> received; SMTP requires <CR><LF> line ends (RFC 5321 §2.3.8)");
export const bareCr = fixedReply(500, "5.5.2", "Error: bare <CR> received; SMTP requires <CR><LF> line ends (RFC 5321 §2.3.8)");
export const notSmtp = fixedReply(554, "5.5.0", "Error: this is an SMTP server, not a web or TLS endpoint; closing connection");
export const earlyTalker = fixedReply(554, "5.5.0", "Error: improper command pipelining before the greeting; closing connection");
export const improperPipelining = fixedReply(554, "5.5.0", "Error: improper use of SMTP command pipelining");
export function syntax(usage: string): Reply {
  return reply(501, "5.5.4", `Syntax: ${usage}`);
}
export function notImplemented(verb: string): Reply {
  return reply(502, "5.5.1", `Error: ${verb} not implemented`);
}
export function badSequence(what: string): Reply {
  return reply(503, "5.5.1", `Error: ${what}`);
}
export const needHelo = fixedReply(503, "5.5.1", "Error: send HELO/EHLO first");
export const nestedMail = fixedReply(503, "5.5.1", "Error: nested MAIL command");
export const needMail = fixedReply(503, "5.5.1", "Error: need MAIL command");
export const needRcpt = fixedReply(503, "5.5.1", "Error: need RCPT command");
export const alreadyTls = fixedReply(503, "5.5.1", "Error: TLS already active");
export const transactionInProgress = fixedReply(503, "5.5.1", "Error: MAIL transaction in progress");
/** BDAT where CHUNKING is hidden: its chunk cannot be skipped safely, so the session ends (as Postfix does). */
export const chunkingNotImplemented = fixedReply(521, "5.5.1", "Error: command not implemented");

// Addresses and message content.
export function badAddress(reason: string): Reply {
  return reply(501, "5.1.7", `Bad address syntax: ${reason}`);
}
/** RFC 6531 §3.4, RFC 6533: non-ASCII address without SMTPUTF8. */
export const needSmtputf8 = fixedReply(553, "5.6.7", "Error: non-ASCII address requires the SMTPUTF8 parameter");
export function sizeExceeded(limit: number): Reply {
  return reply(552, "5.3.4", `Error: message size exceeds fixed maximum message size (${limit} octets)`);
}
export const bareNewlineInData = fixedReply(550, "5.5.2", "Error: message contains bare <CR> or <LF>; SMTP requires <CR><LF> line ends (RFC 5321 §2.3.8)");

// AUTH (RFC 4954 §6).
export const authNotEnabled = fixedReply(503, "5.5.1", "Error: authentication not enabled");
export const encryptionRequired = fixedReply(538, "5.7.11", "Encryption required for requested authentication mechanism; use STARTTLS first");
export const alreadyAuthenticated = fixedReply(503, "5.5.1", "Error: already authenticated");
export const unknownMechanism = fixedReply(504, "5.5.4", "Unrecognized authentication type");
export const cannotDecode = fixedReply(501, "5.5.2", "Cannot decode response (expected base64)");
export const authCancelled = fixedReply(501, "5.0.0", "Authentication cancelled");
export const authFailed = fixedReply(535, "5.7.8", "Authentication credentials invalid");
export const authMalformed = fixedReply(501, "5.5.2", "Malformed authentication exchange");
export const authRequired = fixedReply(530, "5.7.0", "Authentication required");
export const needTlsThenAuth = fixedReply(530, "5.7.0", "Authentication required: use STARTTLS, then AUTH");
