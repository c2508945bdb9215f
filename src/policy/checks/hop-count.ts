import type { Check } from "../check.ts";
import { reject } from "../replies.ts";

/**
 * Mail loops are stopped where mail enters (RFC 5321 §6.3, as Postfix checks
 * hopcount_limit when mail is received): a message whose header section
 * carries `maxReceived` Received: fields, this server's included, is refused
 * at the end of data with 554 5.4.6. The client keeps the message and
 * reports it, so nothing bounces back and forth and nobody here sends a
 * bounce (no backscatter).
 */
export function hopCountCheck(maxReceived: number): Check {
  const endOfData = (header: readonly { readonly name: string }[]) => {
    let hops = 0;
    for (const f of header) if (f.name.toLowerCase() === "received") hops++;
    if (hops < maxReceived) return undefined;
    return reject(554, "5.4.6", `Error: mail forwarding loop: too many hops (${hops} Received: fields, limit ${maxReceived})`, `${hops} Received: fields, limit ${maxReceived}`);
  };
  return {
    name: "hop-count",
    open: () => ({ message: () => ({ endOfData }) }),
  };
}
