// Small charts drawn as inline SVG from /api/activity/series: throughput,
// outcomes and queue depth per minute. Scaled by the viewBox, so they fit a
// phone's width as well as a desktop's.

import { h, s } from "./dom.js";

const W = 400;
const H = 150;
const PAD = { left: 30, right: 6, top: 10, bottom: 22 };

function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return v;
}

function frame(max, minutes) {
  const g = s("g", { class: "axes" });
  const innerH = H - PAD.top - PAD.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + innerH * (1 - f);
    g.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }));
    // Only whole numbers: a half of 5 messages is not a count.
    if (Number.isInteger(max * f)) g.append(s("text", { x: PAD.left - 4, y: y + 4, "text-anchor": "end" }, String(max * f)));
  }
  if (minutes.length > 0) {
    const label = (m) => new Date(m.start).toISOString().slice(11, 16);
    g.append(s("text", { x: PAD.left, y: H - 4 }, label(minutes[0])));
    g.append(s("text", { x: W - PAD.right, y: H - 4, "text-anchor": "end" }, label(minutes.at(-1))));
  }
  return g;
}

function legend(series) {
  return h("p", { class: "legend" }, series.map(([key, label]) => h("span", { class: `key ${key}` }, label)));
}

/** Stacked bars per minute of `series` ([field, label] pairs, bottom first). */
export function stackedBars(title, minutes, series) {
  const totals = minutes.map((m) => series.reduce((n, [k]) => n + (m[k] ?? 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const bw = innerW / Math.max(1, minutes.length);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" }, frame(max, minutes));
  minutes.forEach((m, i) => {
    let y = PAD.top + innerH;
    for (const [k, label] of series) {
      const v = m[k] ?? 0;
      if (v === 0) continue;
      const bh = (v / max) * innerH;
      y -= bh;
      svg.append(s("rect", { x: PAD.left + i * bw + 0.5, y, width: Math.max(1, bw - 1), height: bh, class: `bar ${k}` },
        s("title", {}, `${new Date(m.start).toISOString().slice(11, 16)} ${label}: ${v}`)));
    }
  });
  return h("figure", { class: "card chart-card" }, h("figcaption", {}, title), svg, legend(series));
}

/** A line of `field` per minute (null: not sampled, a gap). */
export function line(title, minutes, field, label) {
  const max = niceMax(Math.max(0, ...minutes.map((m) => m[field] ?? 0)));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const step = innerW / Math.max(1, minutes.length - 1);
  let d = "";
  let pen = false;
  minutes.forEach((m, i) => {
    const v = m[field];
    if (v === null || v === undefined) {
      pen = false;
      return;
    }
    const x = PAD.left + i * step;
    const y = PAD.top + innerH * (1 - v / max);
    d += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)} `;
    pen = true;
  });
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" }, frame(max, minutes), s("path", { d: d.trim() || "M0 0", class: `line ${field}` }));
  return h("figure", { class: "card chart-card" }, h("figcaption", {}, title), svg, legend([[field, label]]));
}
