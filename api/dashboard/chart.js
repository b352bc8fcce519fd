// A small SVG chart of one series: an area under a line and one dot per point (each carries its
// timestamp and value as data attributes, so tests can read what is drawn). Labels are HTML
// around the SVG: text inside a stretched SVG would stretch with it.
"use strict";
window.QChart = (function () {
  const NS = "http://www.w3.org/2000/svg";
  function node(name, attrs) {
    const el = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }
  function html(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined) el.textContent = text;
    return el;
  }
  // points: [{t: ms, v: number}]; opts: {from, to (ms), format(v), label}.
  function svg(points, opts) {
    const W = 600, H = 160, pad = 6;
    const out = node("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.label,
                             preserveAspectRatio: "none", "data-points": String(points.length)});
    const max = Math.max(0, ...points.map(p => p.v)) || 1;
    const x = t => pad + (W - 2 * pad) * (t - opts.from) / Math.max(1, opts.to - opts.from);
    const y = v => H - pad - (H - 2 * pad) * v / max;
    out.appendChild(node("line", {class: "axis", x1: 0, x2: W, y1: H - pad, y2: H - pad}));
    if (!points.length) return out;
    const line = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    const first = x(points[0].t).toFixed(1), last = x(points[points.length - 1].t).toFixed(1);
    out.appendChild(node("path", {class: "area", d: `${line} L${last},${H - pad} L${first},${H - pad} Z`}));
    out.appendChild(node("path", {class: "line", d: line}));
    for (const p of points) {
      // A zero-length segment with round caps: a dot that stays round however the chart is stretched.
      const dot = node("path", {class: "dot", d: `M${x(p.t).toFixed(1)},${y(p.v).toFixed(1)} l0,0`,
                                "data-ts": new Date(p.t).toISOString(), "data-value": String(p.v)});
      const title = node("title");
      title.textContent = `${new Date(p.t).toLocaleString()}: ${opts.format(p.v)}`;
      dot.appendChild(title);
      out.appendChild(dot);
    }
    return out;
  }
  function draw(points, opts) {
    const wrap = html("div", "chart-body");
    const max = Math.max(0, ...points.map(p => p.v));
    wrap.appendChild(html("div", "chart-label", points.length ? `max ${opts.format(max)}` : "no shares in this window"));
    wrap.appendChild(svg(points, opts));
    const axis = html("div", "chart-axis");
    axis.append(html("span", "", new Date(opts.from).toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"})),
                html("span", "", "now"));
    wrap.appendChild(axis);
    return wrap;
  }
  return {draw};
})();
