// A small SVG chart of one series: an area under a line, one dot per point (each carries its
// timestamp and value as data attributes, so tests can read what is drawn), the maximum labelled.
"use strict";
window.QChart = (function () {
  const NS = "http://www.w3.org/2000/svg";
  function node(name, attrs) {
    const el = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }
  // points: [{t: ms, v: number}], from/to: ms; format(v) labels the maximum.
  function draw(points, opts) {
    const W = 600, H = opts.height || 180, padL = 4, padR = 4, padT = 18, padB = 18;
    const svg = node("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.label || "chart",
                             preserveAspectRatio: "none", "data-points": String(points.length)});
    const from = opts.from, to = opts.to;
    const max = Math.max(0, ...points.map(p => p.v)) || 1;
    const x = t => padL + (W - padL - padR) * (t - from) / Math.max(1, to - from);
    const y = v => H - padB - (H - padT - padB) * v / max;
    svg.appendChild(node("line", {class: "axis", x1: padL, x2: W - padR, y1: H - padB, y2: H - padB}));
    if (points.length) {
      const line = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
      const first = x(points[0].t).toFixed(1), last = x(points[points.length - 1].t).toFixed(1);
      svg.appendChild(node("path", {class: "area", d: `${line} L${last},${H - padB} L${first},${H - padB} Z`}));
      svg.appendChild(node("path", {class: "line", d: line}));
      for (const p of points) {
        const dot = node("circle", {class: "dot", cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 2,
                                    "data-ts": new Date(p.t).toISOString(), "data-value": String(p.v)});
        const title = node("title");
        title.textContent = `${new Date(p.t).toLocaleString()}: ${opts.format(p.v)}`;
        dot.appendChild(title);
        svg.appendChild(dot);
      }
    }
    const top = node("text", {x: padL, y: 12});
    top.textContent = points.length ? `max ${opts.format(max)}` : "no shares in this window";
    svg.appendChild(top);
    const left = node("text", {x: padL, y: H - 4});
    left.textContent = new Date(from).toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
    svg.appendChild(left);
    const right = node("text", {x: W - padR, y: H - 4, "text-anchor": "end"});
    right.textContent = "now";
    svg.appendChild(right);
    return svg;
  }
  return {draw};
})();
