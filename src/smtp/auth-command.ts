import { reply, type Reply } from "./reply.ts";
import * as R from "./replies.ts";
import { decodeInitialResponse, type AuthOutcome } from "./auth-driver.ts";
import type { CommandAction, SessionContext } from "./session-context.ts";

/**
 * AUTH (RFC 4954): the command starts a SASL exchange through the handler;
 * each response line in "auth" mode continues it; the outcome becomes 334,
 * 235 or a refusal. The checks before it (offered, TLS, HELO, not twice, not
 * in a transaction) are the command table's.
 */

export const AUTH: CommandAction = {
  async run(ctx, arg, refuse) {
    const parts = arg.trim().split(/ +/);
    if (parts[0] === "" || parts.length > 2) return refuse(R.syntax("AUTH mechanism [initial-response]"));
    const mechanism = parts[0].toUpperCase();
    if (!ctx.opts.authMechanisms.includes(mechanism)) return refuse(R.unknownMechanism);
    const exchange = ctx.handler.startAuth!(ctx.state, mechanism);
    if (!exchange) return refuse(R.unknownMechanism);
    let initial: Buffer | null = null;
    if (parts.length === 2) {
      initial = decodeInitialResponse(parts[1]);
      if (initial === null) return refuse(R.cannotDecode);
    }
    ctx.mode = "auth";
    const step = await ctx.auth.begin(exchange, initial);
    if (!ctx.closed) {
      const pending = outcome(ctx, step);
      if (pending) await pending;
    }
  },
};

/** A line in "auth" mode: the client's response to the last 334. */
export async function authResponse(ctx: SessionContext, raw: Buffer): Promise<void> {
  const decided = ctx.auth.respond(raw);
  if (!(decided instanceof Promise)) return outcome(ctx, decided);
  const step = await decided;
  if (ctx.closed) return;
  const pending = outcome(ctx, step);
  if (pending) await pending;
}

/** What an exchange step means for the client. Asynchronous only where the handler's answer is. */
function outcome(ctx: SessionContext, o: AuthOutcome): void | Promise<void> {
  switch (o.kind) {
    case "challenge":
      ctx.send(reply(334, undefined, o.data.toString("base64")));
      return;
    case "success": {
      endAuth(ctx);
      const decided = ctx.handler.authenticated?.(ctx.state, o.user);
      if (!(decided instanceof Promise)) return loggedIn(ctx, o.user, decided);
      return decided.then((d) => {
        if (!ctx.closed) loggedIn(ctx, o.user, d);
      });
    }
    case "failure": {
      endAuth(ctx);
      ctx.event("auth-failure", { reason: o.reason });
      const refusal = o.reason === "malformed" ? R.authMalformed : R.authFailed;
      const disconnect = ctx.handler.authFailed?.(ctx.state) ?? false;
      if (!(disconnect instanceof Promise)) return failed(ctx, refusal, disconnect);
      return disconnect.then((d) => {
        if (!ctx.closed) failed(ctx, refusal, d);
      });
    }
    case "refused":
      endAuth(ctx);
      ctx.error(o.reply);
      return;
  }
}

function loggedIn(ctx: SessionContext, user: string, refusal: Reply | undefined): void {
  if (refusal && refusal.code >= 400) {
    ctx.event("auth-failure", { reason: "refused" });
    return ctx.error(refusal);
  }
  ctx.authUser = user;
  ctx.event("auth-success", { user });
  ctx.send(R.authOk);
}

function failed(ctx: SessionContext, refusal: Reply, disconnect: boolean): void {
  ctx.error(refusal);
  if (disconnect && !ctx.closed) {
    ctx.send(R.tooManyAuthFailures);
    ctx.close();
  }
}

/** The exchange is over: the next line is a command again. */
export function endAuth(ctx: SessionContext): void {
  ctx.auth.end();
  if (ctx.mode === "auth") ctx.mode = "command";
}
