/**
 * Message composition for `petrel send` and the `send()` API: fields in, an
 * RFC 5322 message with CRLF line ends out, built by nodemailer's MIME
 * composer (RFC 2047 encoded words for non-ASCII headers, quoted-printable or
 * base64 bodies, multipart/alternative for text + HTML, multipart/mixed for
 * attachments). Bcc recipients go into the envelope only, never a header.
 */
import MailComposer from "nodemailer/lib/mail-composer";
import type Mail from "nodemailer/lib/mailer";

export interface AttachmentSpec {
  /** A file to read (its name becomes the attachment's filename unless `filename` is given). */
  path?: string;
  content?: string | Buffer;
  filename?: string;
  contentType?: string;
}

export interface MessageFields {
  /** "Name <addr>" or "addr". */
  from: string;
  to?: string | string[];
  cc?: string | string[];
  bcc?: string | string[];
  subject?: string;
  text?: string | Buffer;
  html?: string | Buffer;
  attachments?: AttachmentSpec[];
  headers?: Record<string, string>;
  date?: Date;
  /** "<id@host>"; generated when absent. */
  messageId?: string;
}

export interface ComposedMessage {
  /** The message, CRLF line ends, not dot-stuffed. */
  raw: Buffer;
  /** Envelope addresses (no display names): to, then cc, then bcc. */
  envelope: { from: string; to: string[] };
}

/** Line ends of text bodies as CRLF (SMTP's), whatever the caller's platform used. */
function crlf(body: string | Buffer | undefined): string | Buffer | undefined {
  if (body === undefined) return undefined;
  const s = typeof body === "string" ? body : body.toString("utf8");
  return s.replace(/\r?\n/g, "\r\n");
}

export async function composeMessage(fields: MessageFields): Promise<ComposedMessage> {
  const mail: Mail.Options = {
    from: fields.from,
    to: fields.to,
    cc: fields.cc,
    bcc: fields.bcc,
    subject: fields.subject,
    text: crlf(fields.text),
    html: crlf(fields.html),
    attachments: fields.attachments?.map((a) => ({
      ...(a.path !== undefined ? { path: a.path } : {}),
      ...(a.content !== undefined ? { content: a.content } : {}),
      ...(a.filename !== undefined ? { filename: a.filename } : {}),
      ...(a.contentType !== undefined ? { contentType: a.contentType } : {}),
    })),
    headers: fields.headers,
    date: fields.date,
    messageId: fields.messageId,
    disableUrlAccess: true,
  };
  const node = new MailComposer(mail).compile();
  const envelope = node.getEnvelope();
  if (!envelope.from) throw new Error("the message needs a From address");
  if (envelope.to.length === 0) throw new Error("the message needs at least one recipient (To, Cc or Bcc)");
  const raw = await node.build();
  return { raw, envelope: { from: envelope.from, to: envelope.to } };
}
