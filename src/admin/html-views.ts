/**
 * One-message links for the dashboard's HTML frame. A frame's `src` is
 * fetched by the browser itself, which sends no Authorization header (and
 * the API sets no cookie), so an administrator's request mints a random,
 * short-lived link naming one message of one mailbox; the frame loads that
 * link, served under a CSP that blocks every remote fetch. The link reveals
 * one message's HTML and nothing else, expires within minutes, and the
 * number kept is bounded.
 */
import { randomBytes } from "node:crypto";
import type { Now } from "../mail/clock.ts";

export interface HtmlViewRef {
  readonly address: string;
  readonly folder: string;
  readonly id: string;
}

interface Entry extends HtmlViewRef {
  readonly expiresAt: number;
}

export const HTML_VIEW_PREFIX = "/view/";

export class HtmlViews {
  private readonly links = new Map<string, Entry>();
  private readonly clock: Now;
  private readonly lifetime: number;
  private readonly max: number;

  constructor(o: { clock: Now; lifetime?: number; max?: number }) {
    this.clock = o.clock;
    this.lifetime = o.lifetime ?? 5 * 60_000;
    this.max = o.max ?? 200;
  }

  /** A path (under /view/) that shows `ref`'s HTML until it expires. */
  create(ref: HtmlViewRef): { path: string; expiresAt: number } {
    const now = this.clock.now();
    for (const [k, e] of this.links) if (e.expiresAt <= now) this.links.delete(k);
    while (this.links.size >= this.max) this.links.delete(this.links.keys().next().value!);
    const key = randomBytes(24).toString("base64url");
    const expiresAt = now + this.lifetime;
    this.links.set(key, { address: ref.address, folder: ref.folder, id: ref.id, expiresAt });
    return { path: HTML_VIEW_PREFIX + key, expiresAt };
  }

  /** The message a link names, while it is valid. */
  find(key: string): HtmlViewRef | null {
    const e = this.links.get(key);
    if (!e) return null;
    if (e.expiresAt <= this.clock.now()) {
      this.links.delete(key);
      return null;
    }
    return e;
  }
}
