import { reply } from "./reply.ts";
import * as R from "./replies.ts";
import type { CommandAction, SessionContext } from "./session-context.ts";
import type { DecodeResult } from "./data-decoder.ts";

/**
 * DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030 §2): opening the message, the
 * input while it streams in, and the reply at its end. The octets go through
 * the session's MessageReceiver; the sequencing checks of DATA are the
 * command table's, BDAT's are here because its chunk is read even when the
 * command is refused.
 */

export const DATA: CommandAction = {
  async run(ctx, _arg, refuse) {
    const opened = await ctx.handler.openMessage(ctx.state, ctx.transaction());
    if (ctx.closed) {
      if (!("code" in opened)) await opened.abort();
      return;
    }
    if ("code" in opened) {
      // The message cannot be taken (e.g. 451 storage failure): the
      // transaction is over, so the client can start again without RSET.
      ctx.resetTransaction();
      return refuse(opened);
    }
    ctx.message.beginData(opened);
    ctx.mode = "data";
    ctx.send(R.startData);
  },
};

export const BDAT: CommandAction = {
  async run(ctx, arg, refuse) {
    const m = /^(\d{1,15})(?: +(LAST))? *$/i.exec(arg);
    if (!m) {
      // We cannot know how many octets follow; the chunk will be read as
      // commands and fail, and the error limit ends the session.
      return refuse(R.syntax("BDAT chunk-size [LAST]"));
    }
    const message = ctx.message;
    message.chunkRemaining = Number(m[1]);
    message.lastChunk = m[2] !== undefined;
    ctx.mode = "bdat";
    // RFC 3030 §2: the chunk is read even when the command is refused.
    if (message.failure === null) {
      if (ctx.mailFrom === undefined) message.failure = R.needMail;
      else if (ctx.recipients.length === 0) message.failure = R.needRcpt;
      else if (!message.started) {
        const opened = await ctx.handler.openMessage(ctx.state, ctx.transaction());
        if (ctx.closed) {
          if (!("code" in opened)) await opened.abort();
          return;
        }
        if ("code" in opened) message.failure = opened;
        else message.beginChunks(opened);
      }
      message.started = true;
    }
    if (message.chunkRemaining === 0) await chunkDone(ctx);
  },
};

/** Input in "data" mode: the body up to <CRLF>.<CRLF>. A promise only when something had to wait. */
export function dataInput(ctx: SessionContext): void | Promise<void> {
  const decoded = ctx.message.data(ctx.input);
  return decoded instanceof Promise ? decoded.then((d) => decodedData(ctx, d)) : decodedData(ctx, decoded);
}

function decodedData(ctx: SessionContext, decoded: DecodeResult): void | Promise<void> {
  // The connection may have gone while the sink was writing: the message
  // was aborted by closed(); do not come back to life as "command".
  if (!decoded.done || ctx.closed) return;
  return endOfData(ctx, decoded);
}

async function endOfData(ctx: SessionContext, decoded: DecodeResult): Promise<void> {
  ctx.input.unshift(decoded.rest);
  ctx.mode = "command";
  const bareNewline = ctx.message.endData();
  if (ctx.opts.bareNewline === "reject" && bareNewline) {
    await ctx.abortMessage();
    ctx.resetTransaction();
    ctx.event("message-refused", { reason: "bare newline" });
    return ctx.error(R.bareNewlineInData);
  }
  await endOfMessage(ctx);
}

/** Input in "bdat" mode: the octets of the current chunk. */
export async function bdatInput(ctx: SessionContext): Promise<void> {
  if (ctx.message.chunkRemaining > 0) {
    await ctx.message.chunk(ctx.input);
    if (ctx.closed) return;
  }
  if (ctx.message.chunkRemaining === 0) await chunkDone(ctx);
}

async function chunkDone(ctx: SessionContext): Promise<void> {
  const message = ctx.message;
  ctx.mode = "command";
  if (message.failure !== null) {
    const failure = message.failure;
    if (message.lastChunk) {
      await ctx.abortMessage();
      ctx.resetTransaction();
    }
    return ctx.error(failure);
  }
  if (message.tooBig) {
    // RFC 3030 §2: refuse now; the transaction stays failed until LAST or RSET.
    await ctx.abortMessage();
    message.failure = R.sizeExceeded(ctx.opts.limits.messageSize);
    if (message.lastChunk) ctx.resetTransaction();
    return ctx.error(R.sizeExceeded(ctx.opts.limits.messageSize));
  }
  if (!message.lastChunk) {
    return ctx.send(reply(250, "2.0.0", `${message.octets} octets received`));
  }
  const bareNewline = await message.endChunks();
  if (ctx.closed) return;
  if (ctx.opts.bareNewline === "reject" && bareNewline) {
    await ctx.abortMessage();
    ctx.resetTransaction();
    return ctx.error(R.bareNewlineInData);
  }
  await endOfMessage(ctx);
}

/** All content is in: refuse it (size), or let the sink store it and pass on its reply. */
async function endOfMessage(ctx: SessionContext): Promise<void> {
  if (ctx.message.tooBig) {
    ctx.resetTransaction();
    ctx.event("message-refused", { reason: "size" });
    return ctx.error(R.sizeExceeded(ctx.opts.limits.messageSize));
  }
  const final = await ctx.message.end();
  ctx.resetTransaction();
  if (final.code < 400) {
    ctx.transactions++;
    // Postfix smtpd_hard_error_limit counts errors "without delivering mail".
    ctx.replies.forgiveErrors();
    ctx.event("message-accepted");
    ctx.send(final);
  } else {
    ctx.error(final);
  }
}
