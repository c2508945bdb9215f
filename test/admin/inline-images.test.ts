/**
 * Inline images of a message's HTML: `cid:` URLs (RFC 2392) become `data:`
 * URLs of the parts they name, so the sandboxed frame shows them without a
 * fetch; what is not a raster image, not named, or over the budget stays.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { INLINE_BUDGET, inlineCidImages } from "../../src/admin/inline-images.ts";

const gif = Buffer.from("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7", "base64");

test("a cid: URL becomes the data: URL of the part with that Content-ID (brackets, case and %-encoding as RFC 2392 has them)", () => {
  const html = `<img src="cid:logo@example.test"><img src='CID:part%231@Example.test'><a href="cid:nothing@x">x</a>`;
  const out = inlineCidImages(html, [
    { contentId: "<logo@example.test>", mimeType: "image/gif", content: gif },
    { contentId: "<part#1@example.test>", mimeType: "image/PNG", content: gif },
  ]);
  const data = `data:image/gif;base64,${gif.toString("base64")}`;
  assert.equal(out, `<img src="${data}"><img src='data:image/png;base64,${gif.toString("base64")}'><a href="cid:nothing@x">x</a>`);
});

test("SVG and other types stay cid:, a malformed %-escape stays, and the budget bounds what is inlined", () => {
  assert.equal(inlineCidImages(`<img src="cid:a@x">`, [{ contentId: "<a@x>", mimeType: "image/svg+xml", content: gif }]), `<img src="cid:a@x">`);
  assert.equal(inlineCidImages(`<img src="cid:%E0%A4%A">`, [{ contentId: "<a@x>", mimeType: "image/gif", content: gif }]), `<img src="cid:%E0%A4%A">`);
  const big = new Uint8Array(INLINE_BUDGET - 10);
  const out = inlineCidImages(`<img src="cid:big@x"><img src="cid:small@x">`, [
    { contentId: "<big@x>", mimeType: "image/png", content: big },
    { contentId: "<small@x>", mimeType: "image/gif", content: new Uint8Array(20) },
  ]);
  assert.match(out, /^<img src="data:image\/png;base64,[A-Za-z0-9+/=]+"><img src="cid:small@x">$/);
});
