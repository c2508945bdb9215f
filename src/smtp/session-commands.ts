import { reply, type Reply } from "./reply.ts";
import * as R from "./replies.ts";
import { ehloKeywords } from "./extensions.ts";
import type { CommandAction, SessionContext } from "./session-context.ts";

/**
 * The commands that act on the session rather than on a transaction:
 * EHLO/HELO (RFC 5321 §4.1.1.1), RSET, NOOP, QUIT, VRFY, HELP (§4.1.1.5–10)
 * and STARTTLS (RFC 3207). Sequencing checks are the command table's.
 */

function hello(extended: boolean): CommandAction {
  return {
    validate(_ctx, arg) {
      const name = arg.trim();
      if (name === "" || /\s/.test(name)) return R.syntax(extended ? "EHLO hostname" : "HELO hostname");
      return undefined;
    },
    run(ctx, arg, refuse) {
      const name = arg.trim();
      const decided = ctx.handler.helo?.(ctx.state, name);
      if (!(decided instanceof Promise)) return greet(ctx, name, extended, decided, refuse);
      return decided.then((d) => {
        if (!ctx.closed) greet(ctx, name, extended, d, refuse);
      });
    },
  };
}

/** The handler's answer to EHLO/HELO: refused, or the session starts afresh with this name. */
function greet(ctx: SessionContext, name: string, extended: boolean, refusal: Reply | undefined, refuse: (r: Reply) => void): void {
  if (refusal && refusal.code >= 400) return refuse(refusal);
  void ctx.abortMessage();
  ctx.resetTransaction();
  ctx.helo = name;
  ctx.esmtp = extended;
  if (!extended) {
    ctx.send(reply(250, undefined, ctx.opts.hostname));
    return;
  }
  ctx.send(reply(250, undefined, `${ctx.opts.hostname} Hello ${name}`, ...ehloKeywords(ctx.extensionView)));
}

export const EHLO = hello(true);
export const HELO = hello(false);

export const RSET: CommandAction = {
  run(ctx) {
    void ctx.abortMessage();
    ctx.resetTransaction();
    ctx.send(R.ok);
  },
};

export const NOOP: CommandAction = {
  run(ctx) {
    ctx.send(R.ok);
  },
};

export const QUIT: CommandAction = {
  run(ctx) {
    ctx.send(R.bye(ctx.opts.hostname));
    ctx.close();
  },
};

/** RFC 5321 §3.5.3: 252 verifies nothing and discloses no user. */
export const VRFY: CommandAction = {
  run(ctx, arg, refuse) {
    if (arg.trim() === "") return refuse(R.syntax("VRFY address"));
    ctx.send(R.cannotVrfy);
  },
};

export const HELP: CommandAction = {
  run(ctx) {
    ctx.send(R.help);
  },
};

export const STARTTLS: CommandAction = {
  run(ctx) {
    // RFC 3207 §4.2 / CVE-2011-0411: anything pipelined after STARTTLS was
    // sent in plaintext and must not be executed once TLS is up.
    const discarded = ctx.input.clear();
    ctx.event("tls-requested", discarded > 0 ? { discarded } : undefined);
    ctx.send(R.readyForTls);
    ctx.flush();
    ctx.mode = "tls-pending";
    ctx.transport.startTls();
  },
};
