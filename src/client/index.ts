/**
 * Petrel's client library: the SMTP client session, message composition and
 * the one-call `send()` API, with `explain()` for errors in plain words.
 */
export { SmtpConnection, SmtpClientError, networkStatus, DEFAULT_TIMEOUTS } from "./smtp-connection.ts";
export type { ConnectOptions, MailProtocol, TlsMode, Timeouts, TlsInfo, MailParams, OutgoingTransaction, TransactionRecipient, TransactionResult, RecipientResult, Capabilities, SmtpClientErrorKind } from "./smtp-connection.ts";
export { composeMessage } from "./compose.ts";
export type { MessageFields, AttachmentSpec, ComposedMessage } from "./compose.ts";
export { send, parseServer, queueIdOf } from "./send.ts";
export type { SendOptions, SendResult } from "./send.ts";
export { explain } from "./explain.ts";
export { ScramSha256Client } from "./scram-client.ts";
