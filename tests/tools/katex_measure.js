// Parse and lay out TeX math with KaTeX, the way a Markdown page renders it.
//
// stdin: a JSON list of {"tex": "...", "display": true|false}
// stdout: a JSON list of {"ok": bool, "error": str|null, "width_em": number|null}
//
// "ok" is KaTeX's own verdict (throwOnError, strict "error" for anything KaTeX
// would only warn about). "width_em" is the width of KaTeX's HTML layout in em
// of the math font: the sum, along each line, of every glyph's advance width
// from KaTeX's font metrics, the explicit spaces and margins, with stacked
// boxes (fractions, scripts, limits, array columns) counting their widest
// row and size changes scaling what they hold. It is an estimate of what a
// browser would draw (no kerning, no browser font fallback), not a screenshot.
"use strict";
const path = require("path");
const katexDir = process.env.KATEX_DIR;
const katex = require(katexDir ? path.join(katexDir, "katex") : "katex");

const SIZES = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.44, 1.728, 2.074, 2.488];
const glyphCache = new Map();

function em(value) {
  if (typeof value !== "string" || !value.endsWith("em")) return 0;
  const x = parseFloat(value);
  return Number.isFinite(x) ? x : 0;
}

function glyphWidth(ch, typewriter) {
  // KaTeX joins the characters of a text run into one symbol carrying one
  // character's metrics; measure each character on its own instead.
  const key = (typewriter ? "tt:" : "rm:") + ch;
  if (!glyphCache.has(key)) {
    const tex = (typewriter ? "\\texttt{" : "\\text{") + ch.replace(/[\\{}$&#^_%~]/g, (c) => "\\" + c) + "}";
    let w = 0.5;
    try {
      w = width(katex.__renderToDomTree(tex, { throwOnError: true, strict: "ignore" }), 1, true);
    } catch (e) { /* a character KaTeX cannot set: keep the average */ }
    glyphCache.set(key, w);
  }
  return glyphCache.get(key);
}

function width(node, scale, single) {
  const classes = node.classes || [];
  const style = node.style || {};
  let own = em(style.marginLeft) + em(style.marginRight);
  if (node.text !== undefined) {  // a symbol
    const chars = Array.from(node.text);
    if (chars.length > 1 && !single) {
      const tt = classes.includes("texttt");
      return scale * (own + chars.reduce((s, c) => s + glyphWidth(c, tt), 0));
    }
    return scale * (own + (node.width || 0) + (node.italic || 0) * 0);
  }
  if (classes.includes("nulldelimiter")) own += 0.12;
  if (style.width && classes.includes("arraycolsep")) own += em(style.width);
  let inner = scale;
  if (classes.includes("sizing") || classes.includes("fontsize-ensurer")) {
    const reset = classes.find((c) => /^reset-size\d+$/.test(c));
    const size = classes.find((c) => /^size\d+$/.test(c));
    if (reset && size) inner = scale * SIZES[+size.slice(4) - 1] / SIZES[+reset.slice(10) - 1];
  }
  const kids = node.children || [];
  const stacked = classes.includes("vlist");
  let total = 0;
  for (const child of kids) {
    const w = width(child, inner, single);
    total = stacked ? Math.max(total, w) : total + w;
  }
  return own * scale + total;
}

function measure(item) {
  const options = { displayMode: !!item.display, throwOnError: true, strict: "error", trust: false };
  try {
    katex.renderToString(item.tex, options);
  } catch (e) {
    return { ok: false, error: String(e.message || e).slice(0, 500), width_em: null };
  }
  const tree = katex.__renderToDomTree(item.tex, options);
  // the katex-html part only (the MathML copy has no widths)
  const find = (n) => ((n.classes || []).includes("katex-html") ? n : (n.children || []).map(find).find(Boolean));
  const html = find(tree);
  return { ok: true, error: null, width_em: html ? width(html, 1, false) : 0 };
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => { input += d; });
process.stdin.on("end", () => {
  const items = JSON.parse(input);
  process.stdout.write(JSON.stringify({ version: katex.version, results: items.map(measure) }));
});
