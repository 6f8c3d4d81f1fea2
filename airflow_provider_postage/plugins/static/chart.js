/*
 * postage-chart: a tiny time-series chart drawn as SVG, with no dependency (written for this provider,
 * Apache-2.0 like the rest of it). Colours come from CSS classes (pc-*), so the page's light and dark
 * themes style it.
 *
 *   PostageChart.draw(container, {
 *     points: [{t: <ms since epoch>, y: <number>, title: "..."}],         // the line, any order
 *     marks:  [{t: <ms>, y: <number|null>, cls: "purchased", title: "..."}] // events: a rule and a dot on
 *                                                                         // the line (off it: at y)
 *     width: 560, height: 220, label: "accessible name", format: (y) => "12.50"
 *   })
 */
(function (global) {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function titled(node, text) {
    if (text) el("title", {}, node).textContent = text;
    return node;
  }

  /* "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten. */
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    var raw = (hi - lo) / Math.max(1, count);
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; }).find(function (s) { return s >= raw; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
    return out;
  }

  function timeLabel(ms, span) {
    var d = new Date(ms);
    if (span > 2 * 86400000) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  /* The line's value at time t (linear between points, flat beyond them). */
  function valueAt(points, t) {
    if (!points.length) return null;
    if (t <= points[0].t) return points[0].y;
    for (var i = 1; i < points.length; i++) {
      if (t <= points[i].t) {
        var a = points[i - 1], b = points[i];
        return b.t === a.t ? b.y : a.y + (b.y - a.y) * (t - a.t) / (b.t - a.t);
      }
    }
    return points[points.length - 1].y;
  }

  function draw(container, options) {
    var width = options.width || 560, height = options.height || 220;
    var pad = { left: 56, right: 14, top: 12, bottom: 26 };
    var format = options.format || function (y) { return y.toFixed(2); };
    var points = (options.points || []).filter(function (p) { return isFinite(p.t) && isFinite(p.y); })
      .sort(function (a, b) { return a.t - b.t; });
    // A mark sits on the line where the line covers its time; elsewhere at its own y (if any).
    var marks = (options.marks || []).filter(function (m) { return isFinite(m.t); })
      .map(function (m) {
        var own = m.y === null || m.y === undefined || !isFinite(m.y) ? null : m.y;
        var covered = points.length && m.t >= points[0].t && m.t <= points[points.length - 1].t;
        var y = covered || own === null ? valueAt(points, m.t) : own;
        return { t: m.t, y: y === null ? 0 : y, cls: m.cls || "", title: m.title || "" };
      });

    var svg = el("svg", {
      viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": options.label || "chart",
      class: "pc-chart", preserveAspectRatio: "xMidYMid meet"
    });
    container.appendChild(svg);
    var all = points.concat(marks);
    if (!all.length) {
      el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "pc-empty" }, svg).textContent =
        "No balance read yet";
      return svg;
    }

    var t0 = Math.min.apply(null, all.map(function (p) { return p.t; }));
    var t1 = Math.max.apply(null, all.map(function (p) { return p.t; }));
    if (t1 - t0 < 60000) { t0 -= 30 * 60000; t1 += 30 * 60000; } // one moment: half an hour either side
    var ys = all.map(function (p) { return p.y; });
    var y0 = Math.min(0, Math.min.apply(null, ys)), y1 = Math.max.apply(null, ys);
    if (y1 <= y0) y1 = y0 + 1;
    var top = y1 + (y1 - y0) * 0.08; // headroom above the highest value
    var yTicks = ticks(y0, top, 4);
    y1 = Math.max(top, yTicks[yTicks.length - 1]);

    var plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
    function x(t) { return pad.left + (t - t0) / (t1 - t0) * plotW; }
    function y(v) { return pad.top + plotH - (v - y0) / (y1 - y0) * plotH; }

    var grid = el("g", { class: "pc-axes" }, svg);
    yTicks.forEach(function (v) {
      el("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "pc-grid" }, grid);
      el("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", class: "pc-axis" }, grid).textContent =
        format(v);
    });
    var span = t1 - t0;
    for (var i = 0; i <= 3; i++) {
      var t = t0 + span * i / 3;
      el("text", {
        x: x(t), y: height - 8, class: "pc-axis", "text-anchor": i === 0 ? "start" : i === 3 ? "end" : "middle"
      }, grid).textContent = timeLabel(t, span);
    }

    if (points.length > 1) {
      var d = points.map(function (p, n) { return (n ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.y).toFixed(1); });
      el("path", { d: d.join(" "), class: "pc-line" }, svg);
    }
    var dots = el("g", { class: "pc-points" }, svg);
    points.forEach(function (p) {
      titled(el("circle", { cx: x(p.t), cy: y(p.y), r: points.length > 60 ? 1.5 : 2.5, class: "pc-point" }, dots),
        p.title);
    });
    var marked = el("g", { class: "pc-marks" }, svg);
    marks.forEach(function (m) {
      el("line", { x1: x(m.t), x2: x(m.t), y1: pad.top, y2: pad.top + plotH, class: "pc-rule " + m.cls }, marked);
    });
    marks.forEach(function (m) {
      titled(el("circle", { cx: x(m.t), cy: y(m.y), r: 5.5, class: "pc-mark " + m.cls }, marked), m.title);
    });
    return svg;
  }

  global.PostageChart = { draw: draw, ticks: ticks, valueAt: valueAt };
})(window);
