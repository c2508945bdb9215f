/**
 * A message's HTML with its inline images — parts it names with `cid:` URLs
 * (RFC 2392: the Content-ID without its angle brackets, %-encoded) — turned
 * into `data:` URLs. Browsers do not resolve `cid:`, and the frame's CSP
 * allows only `data:` images, so this is how an embedded logo shows while
 * nothing is fetched. Raster types only, and a bound on the bytes inlined.
 */

export interface RelatedPart {
  readonly contentId: string;
  readonly mimeType: string;
  readonly content: Uint8Array;
}

/** Image types shown inline (SVG is left out: it is a document of its own). */
const RASTER = /^image\/(png|gif|jpeg|webp|bmp|avif)$/i;

/** The most image bytes put into one page. */
export const INLINE_BUDGET = 8 * 1024 * 1024;

function cidOf(url: string): string | null {
  try {
    return decodeURIComponent(url).toLowerCase();
  } catch {
    return null;
  }
}

export function inlineCidImages(html: string, parts: readonly RelatedPart[]): string {
  const byId = new Map<string, string>();
  let budget = INLINE_BUDGET;
  for (const p of parts) {
    if (!RASTER.test(p.mimeType) || p.content.length > budget) continue;
    const id = p.contentId.trim().replace(/^<(.*)>$/, "$1").toLowerCase();
    if (byId.has(id)) continue;
    budget -= p.content.length;
    byId.set(id, `data:${p.mimeType.toLowerCase()};base64,${Buffer.from(p.content).toString("base64")}`);
  }
  if (byId.size === 0) return html;
  return html.replace(/\bcid:([^"'\s)>]+)/gi, (whole, url: string) => {
    const id = cidOf(url);
    return (id !== null && byId.get(id)) || whole;
  });
}
