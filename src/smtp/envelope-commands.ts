import { reply, type Reply } from "./reply.ts";
import type { Mailbox } from "../mail/envelope.ts";
import type { MailParameters } from "./mail-parameters.ts";
import type { AcceptedRecipient } from "./session-handler.ts";
import * as R from "./replies.ts";
import { afterKeyword } from "./command-line.ts";
import { isAscii } from "../mail/address.ts";
import { parsePath } from "./address.ts";
import { parseMailParameters, parseRcptParameters } from "./mail-parameters.ts";
import { mailParameterSupport, rcptParameterSupport } from "./extensions.ts";
import type { CommandAction, SessionContext } from "./session-context.ts";

/**
 * MAIL and RCPT (RFC 5321 §4.1.1.2–3): the envelope of a transaction, its
 * ESMTP parameters, and the handler's decision on each. Sequencing checks
 * (HELO first, no nested MAIL, AUTH first on submission, MAIL before RCPT)
 * are the command table's.
 */

export const MAIL: CommandAction = {
  run(ctx, arg, refuse) {
    if (ctx.transactions >= ctx.opts.limits.messagesPerConnection) {
      ctx.send(R.tooManyMessages);
      ctx.close();
      return;
    }
    const text = afterKeyword(arg, "FROM:");
    if (text === null) return refuse(R.syntax("MAIL FROM:<address>"));
    const path = parsePath(text, { allowUtf8: true, allowNull: true });
    if (!path.ok) return refuse(R.badAddress(path.reason));
    const parsed = parseMailParameters(path.rest, mailParameterSupport(ctx.extensionView));
    if (!parsed.ok) return refuse(reply(parsed.code, parsed.status, parsed.text));
    // RFC 4954 §5: AUTH= from an unauthenticated client is not trusted and counts as AUTH=<>.
    const params = parsed.params.auth !== undefined && ctx.authUser === null ? { ...parsed.params, auth: "<>" } : parsed.params;
    if (path.mailbox !== null && !params.smtputf8 && !isAscii(path.mailbox.localPart + path.mailbox.domain)) {
      return refuse(R.needSmtputf8);
    }
    if (params.size !== undefined && params.size > ctx.opts.limits.messageSize) {
      return refuse(R.sizeExceeded(ctx.opts.limits.messageSize));
    }
    const decision = ctx.handler.mail(ctx.state, path.mailbox, params);
    if (!(decision instanceof Promise)) return mailDecided(ctx, path.mailbox, params, decision, refuse);
    return decision.then((d) => mailDecided(ctx, path.mailbox, params, d, refuse));
  },
};

function mailDecided(ctx: SessionContext, from: Mailbox | null, params: MailParameters, decision: Reply | undefined, refuse: (r: Reply) => void): void {
  if (ctx.closed) return;
  if (decision && decision.code >= 400) return refuse(decision);
  // A BDAT refused before this MAIL (RFC 3030 §2: "503" for BDAT without
  // MAIL) left its failure behind; this transaction starts clean.
  ctx.resetTransaction();
  ctx.mailFrom = from;
  ctx.mailParams = params;
  ctx.recipients = [];
  ctx.send(decision ?? R.mailOk);
}

export const RCPT: CommandAction = {
  run(ctx, arg, refuse) {
    const text = afterKeyword(arg, "TO:");
    if (text === null) return refuse(R.syntax("RCPT TO:<address>"));
    const path = parsePath(text, { allowUtf8: true, allowNull: false });
    if (!path.ok || path.mailbox === null) return refuse(R.badAddress(path.ok ? "null address" : path.reason));
    const parsed = parseRcptParameters(path.rest, rcptParameterSupport(ctx.extensionView));
    if (!parsed.ok) return refuse(reply(parsed.code, parsed.status, parsed.text));
    if (!ctx.mailParams!.smtputf8 && !isAscii(path.mailbox.localPart + path.mailbox.domain)) {
      return refuse(R.needSmtputf8);
    }
    // RFC 5321 §4.5.3.1.10: the client is expected to send the rest in a later
    // transaction; this is not a client error (Postfix does not count it
    // either, up to smtpd_recipient_overshoot_limit), or a client with more
    // recipients than the limit would be cut off by the error limit.
    if (ctx.recipients.length >= ctx.opts.limits.recipients) {
      ctx.send(R.tooManyRecipients);
      return;
    }
    const recipient: AcceptedRecipient = { mailbox: path.mailbox, params: parsed.params };
    const decision = ctx.handler.rcpt(ctx.state, ctx.transaction(), path.mailbox, parsed.params);
    if (!(decision instanceof Promise)) return rcptDecided(ctx, recipient, decision, refuse);
    return decision.then((d) => rcptDecided(ctx, recipient, d, refuse));
  },
};

function rcptDecided(ctx: SessionContext, recipient: AcceptedRecipient, decision: Reply | undefined, refuse: (r: Reply) => void): void {
  if (ctx.closed) return;
  if (decision && decision.code >= 400) return refuse(decision);
  ctx.recipients.push(recipient);
  ctx.send(decision ?? R.rcptOk);
}

