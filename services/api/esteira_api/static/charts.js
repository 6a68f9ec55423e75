// Small live charts for the operator page: plain SVG, no library. Each chart redraws from the
// numbers it is given; the page keeps the last 15 minutes in memory. Labels are HTML legends
// (readable, and checked for contrast like every other text); the SVG carries an aria-label
// with the same numbers for screen readers.
(function (global) {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 300;
  const LEFT = 26;
  const RIGHT = 296;
  const TOP = 6;

  function node(tag, attributes, text) {
    const el = document.createElementNS(NS, tag);
    Object.keys(attributes || {}).forEach(function (name) { el.setAttribute(name, String(attributes[name])); });
    if (text !== undefined) { el.textContent = text; }
    return el;
  }

  function height(svg) { return svg.viewBox.baseVal.height || 90; }

  function frame(svg, max, leftLabel, rightLabel) {
    const bottom = height(svg) - 14;
    svg.replaceChildren(
      node("line", { x1: LEFT, y1: bottom, x2: RIGHT, y2: bottom, stroke: "#64748b", "stroke-width": 1 }),
      node("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: bottom, stroke: "#64748b", "stroke-width": 1 }),
      node("text", { x: LEFT - 3, y: TOP + 7, "text-anchor": "end" }, String(max)),
      node("text", { x: LEFT - 3, y: bottom, "text-anchor": "end" }, "0"),
      node("text", { x: LEFT, y: bottom + 11 }, leftLabel),
      node("text", { x: RIGHT, y: bottom + 11, "text-anchor": "end" }, rightLabel)
    );
    return bottom;
  }

  function niceMax(value) {
    if (value <= 5) { return 5; }
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    return Math.ceil(value / step) * step;
  }

  function legend(list, entries) {
    if (!list) { return; }
    list.replaceChildren.apply(list, entries.map(function (entry) {
      const item = document.createElement("li");
      const swatch = document.createElement("i");
      swatch.style.background = entry.color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(entry.label + ": " + entry.value));
      return item;
    }));
  }

  /** series: [{ name, label, color, points: [[ms, value], ...] }] over [from, to] (ms). */
  function lines(svg, list, series, from, to) {
    const peak = Math.max(0, ...series.flatMap(function (s) { return s.points.map(function (p) { return p[1]; }); }));
    const max = niceMax(peak);
    const bottom = frame(svg, max, "-15 min", "agora");
    const x = function (t) { return LEFT + ((t - from) / (to - from)) * (RIGHT - LEFT); };
    const y = function (v) { return bottom - (v / max) * (bottom - TOP); };
    series.forEach(function (s) {
      if (!s.points.length) { return; }
      const d = s.points.map(function (p, i) { return (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1); }).join(" ");
      svg.appendChild(node("path", { d: d, fill: "none", stroke: s.color, "stroke-width": 1.6, "data-series": s.name, "data-points": s.points.length }));
    });
    const now = series.map(function (s) { return { label: s.label, color: s.color, value: s.points.length ? s.points[s.points.length - 1][1] : "—" }; });
    legend(list, now);
    svg.setAttribute("aria-label", svg.getAttribute("aria-label").split(":")[0] + ": " + now.map(function (e) { return e.label + " " + e.value; }).join(", "));
  }

  /** buckets: [{ counts: { name: n } }] oldest first; series: [{ name, label, color }]; stacked. */
  function bars(svg, list, buckets, series) {
    const totals = buckets.map(function (b) { return series.reduce(function (sum, s) { return sum + (b.counts[s.name] || 0); }, 0); });
    const max = niceMax(Math.max(0, ...totals));
    const bottom = frame(svg, max, "-15 min", "agora");
    const slot = (RIGHT - LEFT) / buckets.length;
    buckets.forEach(function (bucket, i) {
      let base = bottom;
      series.forEach(function (s) {
        const value = bucket.counts[s.name] || 0;
        if (!value) { return; }
        const h = (value / max) * (bottom - TOP);
        base -= h;
        svg.appendChild(node("rect", { x: (LEFT + i * slot + 1).toFixed(1), y: base.toFixed(1), width: (slot - 2).toFixed(1), height: h.toFixed(1), fill: s.color, "data-series": s.name, "data-value": value }));
      });
    });
    const sums = series.map(function (s) {
      return { label: s.label, color: s.color, value: buckets.reduce(function (sum, b) { return sum + (b.counts[s.name] || 0); }, 0) };
    });
    legend(list, sums);
    svg.setAttribute("aria-label", svg.getAttribute("aria-label").split(":")[0] + " (15 min): " + sums.map(function (e) { return e.label + " " + e.value; }).join(", "));
  }

  /** items: [{ name, label, color, value }]: one horizontal bar each, the count beside it. */
  function horizontal(svg, items) {
    const rows = items.length;
    const h = height(svg);
    const row = (h - 4) / rows;
    const max = Math.max(1, ...items.map(function (item) { return item.value; }));
    svg.replaceChildren();
    items.forEach(function (item, i) {
      const y = 2 + i * row;
      svg.appendChild(node("text", { x: 2, y: y + row * 0.7 }, item.label));
      const width = (item.value / max) * (W - 90);
      svg.appendChild(node("rect", { x: 56, y: y + 2, width: width.toFixed(1), height: (row - 4).toFixed(1), fill: item.color, "data-series": item.name, "data-value": item.value }));
      svg.appendChild(node("text", { x: 56 + width + 4, y: y + row * 0.7 }, String(item.value)));
    });
    svg.setAttribute("aria-label", "Distribuição por criticidade: " + items.map(function (item) { return item.label + " " + item.value; }).join(", "));
  }

  global.EsteiraCharts = { lines: lines, bars: bars, horizontal: horizontal };
})(window);
