// Building the page: elements from data (text is always set as text, never parsed as HTML: a device's hello
// is the device's words), and the words and colours for outcomes, times and ratios.

/** An element: `h("a", { href: "#/x", class: "c" }, "text", child, ...)`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The outcomes, in the order of a summary, with the words the page shows beside each colour. */
export const OUTCOMES = [
  ["succeeded", "succeeded"],
  ["in_progress", "in progress"],
  ["downloaded", "downloaded, waiting for its window"],
  ["pending", "pending"],
  ["rejected_hardware", "rejected: hardware level"],
  ["rejected_software", "rejected: software level"],
  ["failed", "failed"],
  ["timed_out", "timed out"],
  ["cancelled", "cancelled"],
];

export function outcomeWords(outcome) {
  const found = OUTCOMES.find(([o]) => o === outcome);
  return found ? found[1] : outcome;
}

/** A coloured mark with its words: colour is never the only sign. */
export function chip(outcome, count) {
  return h("span", { class: `chip o-${outcome}` }, h("span", { class: "swatch", "aria-hidden": "true" }), outcomeWords(outcome), count === undefined ? null : h("b", {}, ` ${count}`));
}

/** A bar of outcome segments, each as wide as its share, with a text legend. */
export function bar(counts, total, label) {
  const segments = OUTCOMES.filter(([o]) => (counts[o] || 0) > 0).map(([o]) => {
    const seg = h("span", { class: `seg o-${o}`, title: `${outcomeWords(o)}: ${counts[o]}` });
    seg.style.flexGrow = String(counts[o]);
    return seg;
  });
  const summary = OUTCOMES.filter(([o]) => (counts[o] || 0) > 0).map(([o]) => `${outcomeWords(o)} ${counts[o]}`).join(", ");
  return h(
    "div",
    { class: "barwrap" },
    h("div", { class: "bar", role: "img", "aria-label": `${label}: ${summary || "no devices"}` }, segments.length ? segments : h("span", { class: "seg empty" })),
    h("div", { class: "legend" }, OUTCOMES.filter(([o]) => (counts[o] || 0) > 0).map(([o]) => chip(o, counts[o])), h("span", { class: "total" }, `of ${total}`)),
  );
}

/** A time as `2026-11-25 16:47:07 UTC`. */
export function when(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** A duration in words: `4m 12s`, `2h 5m`, `3d 1h`. */
export function span(ms) {
  let s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function percent(ratio) {
  return `${(ratio * 100).toFixed(ratio * 100 % 1 ? 1 : 0)}%`;
}

export function short(sha) {
  return sha ? sha.slice(0, 12) : "";
}

/** A table: column headings and rows of cells. */
export function table(caption, heads, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty || "None.");
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h("caption", { class: "sr-only" }, caption),
      h("thead", {}, h("tr", {}, heads.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
    ),
  );
}

/** A message for the operator: an error says what went wrong in the API's own words. */
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
