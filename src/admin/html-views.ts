/**
 * One-message links for the dashboard's HTML frame. A frame's `src` is
 * fetched by the browser itself, which sends no Authorization header (and
 * the API sets no cookie), so an administrator's request mints a random,
 * short-lived link naming one message of one mailbox; the frame loads that
 * link, served under a CSP that blocks every remote fetch. The link reveals
 * one message's HTML and nothing else, expires within minutes, and the
 * number kept is bounded.
 */
import type { Now } from "../mail/clock.ts";
import { ExpiringTokens } from "./expiring-tokens.ts";

export interface HtmlViewRef {
  readonly address: string;
  readonly folder: string;
  readonly id: string;
}

export const HTML_VIEW_PREFIX = "/view/";

export class HtmlViews {
  private readonly links: ExpiringTokens<HtmlViewRef>;

  constructor(o: { clock: Now; lifetime?: number; max?: number }) {
    this.links = new ExpiringTokens({ clock: o.clock, lifetime: o.lifetime ?? 5 * 60_000, max: o.max ?? 200 });
  }

  /** A path (under /view/) that shows `ref`'s HTML until it expires. */
  create(ref: HtmlViewRef): { path: string; expiresAt: number } {
    const { token, expiresAt } = this.links.issue({ address: ref.address, folder: ref.folder, id: ref.id });
    return { path: HTML_VIEW_PREFIX + token, expiresAt };
  }

  /** The message a link names, while it is valid. */
  find(key: string): HtmlViewRef | null {
    return this.links.find(key);
  }
}
