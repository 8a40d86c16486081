// Draws the dashboard's charts as SVG from the JSON the server embedded in the page
// (serve/dashboard_data.py has already folded what would not stay readable).
// Labels are measured in the page: a name too long for its margin is cut with an ellipsis
// (the full name is its tooltip), and axis labels that would touch a neighbour are dropped, so
// no two labels overlap and none is cut by the chart's edge, at 30 nodes or 300.
// Each chart's div gets data-bars = how many bars it drew (the browser tests read it).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("dashboard-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const STATUS = {
    success: "#1a7f37", failed: "#cf222e", abandoned: "#9a6700", running: "#0969da",
    queued: "#8c959f", skipped: "#8c959f", unchanged: "#6e7781",
  };
  const FOLDED = "#afb8c1";
  const ROW = 20; // px per bar row: 12px text never touches the next row
  const AXIS = 40; // px under the plot: tick labels and the axis title

  function el(parent, tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text != null) node.textContent = text;
    parent.appendChild(node);
    return node;
  }
  const color = (status) => STATUS[status] || "#6e7781";
  const full = (v) => Number(v).toLocaleString("en-US", { maximumFractionDigits: 2 });
  function seconds(v) {
    if (v >= 3600) return (v / 3600).toFixed(1) + " h";
    if (v >= 60) return (v / 60).toFixed(1) + " min";
    return (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)) + " s";
  }
  function compact(v) {
    for (const [unit, size] of [["B", 1e9], ["M", 1e6], ["k", 1e3]]) {
      if (v >= size) return String(Math.round((v / size) * 10) / 10) + unit;
    }
    return String(v);
  }

  // Linear ticks on 1-2-5 steps: labels printed with the step's decimals, so two ticks never
  // read the same (a run of 0.4 s used to get "0, 0, 0, 1").
  function niceTicks(max, count) {
    const top = max > 0 ? max : 1;
    const raw = top / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const decimals = Math.max(0, -Math.floor(Math.log10(step)));
    const ticks = [];
    for (let t = 0; t <= top + step * 0.999; t += step) ticks.push(Number(t.toFixed(decimals)));
    return { ticks, max: ticks[ticks.length - 1], label: (t) => t.toFixed(decimals) };
  }

  // A duration axis in one unit: seconds, or minutes past three minutes.
  function timeTicks(max, count) {
    const minutes = max >= 180;
    const nice = niceTicks(minutes ? max / 60 : max, count);
    const k = minutes ? 60 : 1;
    return {
      ticks: nice.ticks.map((t) => t * k), max: nice.max * k,
      label: (t) => nice.label(t / k) + (minutes ? " min" : " s"),
    };
  }

  function svgFor(container, height) {
    container.textContent = "";
    const width = Math.max(320, container.clientWidth);
    return [el(container, "svg", { width, height, viewBox: `0 0 ${width} ${height}` }), width];
  }

  // Cut a label to `room` px with an ellipsis after its kind ("dbt.…_model_0107": the end names
  // the node); the whole name stays as its tooltip.
  function fit(text, room, name) {
    el(text, "title", {}, name);
    const node = text.firstChild && text.firstChild.nodeType === 3 ? text.firstChild : null;
    if (!node || text.getComputedTextLength() <= room) return;
    const dot = name.indexOf(".");
    const head = dot > 0 && dot < 10 ? name.slice(0, dot + 1) : "";
    let keep = name.length - head.length;
    while (keep > 1 && text.getComputedTextLength() > room) {
      keep -= 1;
      node.nodeValue = head + "\u2026" + name.slice(name.length - keep);
    }
  }

  function widest(svg, labels) {
    const probe = el(svg, "text", { class: "label" });
    let most = 0;
    for (const l of labels) {
      probe.textContent = l;
      most = Math.max(most, probe.getComputedTextLength());
    }
    probe.remove();
    return most;
  }

  // Keep axis labels between `lo` and `hi` (the plot's own span, so the first one never
  // reaches the labels of the other axis), then drop those that touch the one kept before.
  function inside(lo, hi, texts) {
    for (const t of texts) {
      const box = t.getBBox();
      const x = Number(t.getAttribute("x"));
      if (box.x + box.width > hi) t.setAttribute("x", x - (box.x + box.width - hi));
      else if (box.x < lo) t.setAttribute("x", x + (lo - box.x));
    }
  }
  function thin(texts, gap) {
    let last = null;
    for (const t of texts) {
      const box = t.getBBox();
      if (last && box.x < last.x + last.width + gap && box.y < last.y + last.height && last.y < box.y + box.height) {
        t.remove();
      } else {
        last = box;
      }
    }
  }

  function xAxis(svg, width, y, ticks, xOf, label, title) {
    el(svg, "line", { x1: xOf(ticks[0]), x2: xOf(ticks[ticks.length - 1]), y1: y, y2: y, class: "axis" });
    const texts = ticks.map((t) => {
      el(svg, "line", { x1: xOf(t), x2: xOf(t), y1: y, y2: y + 4, class: "axis" });
      return el(svg, "text", { x: xOf(t), y: y + 15, class: "tick", "text-anchor": "middle" }, label(t));
    });
    inside(Math.max(1, xOf(ticks[0]) - 20), width - 1, texts);
    thin(texts, 6);
    const caption = el(svg, "text", { x: width - 2, y: y + 30, class: "axis-title", "text-anchor": "end" }, title);
    return caption;
  }

  // Horizontal bars, one row per name: `bars` [{label, value, status?, href?}], `folded`
  // {count, value} drawn last in grey as "+N other ...".
  function barChart(container, bars, folded, opts) {
    const rows = bars.map((b) => Object.assign({}, b));
    if (folded) rows.push({ label: `+${folded.count} other ${opts.noun}`, value: folded.value, folded: true });
    container.dataset.bars = String(rows.length);
    if (!rows.length) { container.textContent = opts.empty; return; }
    const height = 8 + rows.length * ROW + AXIS;
    const [svg, width] = svgFor(container, height);
    const names = rows.map((r) => r.label);
    const left = Math.min(Math.ceil(widest(svg, names)) + 12, Math.floor(width * 0.4));
    const values = rows.map((r) => opts.valueLabel(r.value));
    const right = Math.ceil(widest(svg, values)) + 10;
    const plot = Math.max(40, width - left - right);
    // A folded total larger than every named bar would squash them: on a linear scale the axis
    // ends at the largest named bar and the folded bar is drawn cut (a break at its end).
    const named = rows.filter((r) => !r.folded).map((r) => r.value);
    const top = opts.log || !named.length ? Math.max(...rows.map((r) => r.value)) : Math.max(...named);
    let xOf, ticks, tickLabel;
    if (opts.log) {
      const decades = Math.max(1, Math.ceil(Math.log10(Math.max(top, 10))));
      const every = decades > 6 ? 2 : 1;
      ticks = [];
      for (let d = 0; d <= decades; d += every) ticks.push(Math.pow(10, d));
      if (ticks[ticks.length - 1] < Math.pow(10, decades)) ticks.push(Math.pow(10, decades));
      xOf = (v) => left + (plot * Math.log10(Math.max(1, v))) / decades;
      tickLabel = compact;
    } else {
      const nice = opts.time ? timeTicks(top, Math.max(2, Math.floor(plot / 70)))
        : niceTicks(top, Math.max(2, Math.floor(plot / 70)));
      ticks = nice.ticks;
      xOf = (v) => left + (plot * v) / nice.max;
      tickLabel = nice.label;
    }
    rows.forEach((r, i) => {
      const y = 8 + i * ROW;
      const group = r.href ? el(svg, "a", { href: r.href }) : svg;
      const end = xOf(Math.min(r.value, ticks[ticks.length - 1]));
      const bar = el(group, "rect", {
        x: left, y: y + 3, height: ROW - 6, width: Math.max(1, end - left),
        fill: r.folded ? FOLDED : opts.fill || color(r.status), class: "bar",
      });
      el(bar, "title", {}, `${r.label}: ${opts.valueLabel(r.value)}`);
      if (r.value > ticks[ticks.length - 1]) {
        el(group, "path", { d: `M${end - 14},${y + 17} l6,-14 M${end - 8},${y + 17} l6,-14`, class: "break" });
      }
      const name = el(group, "text", { x: left - 8, y: y + ROW / 2 + 4, class: "label", "text-anchor": "end" }, r.label);
      fit(name, left - 12, r.label);
      el(svg, "text", { x: end + 4, y: y + ROW / 2 + 4, class: "value" }, opts.valueLabel(r.value));
    });
    xAxis(svg, width, 8 + rows.length * ROW + 2, ticks, xOf, tickLabel, opts.axisTitle);
  }

  // Recent runs left to right: bar height = duration, colour = status; a bar opens the run's
  // timeline. A run still going has no duration yet and shows as a dot.
  function runsChart(container, runs) {
    container.dataset.bars = String(runs.length);
    if (!runs.length) { container.textContent = "no runs yet"; return; }
    const height = 230;
    const [svg, width] = svgFor(container, height);
    const durations = runs.map((r) => r.duration_s || 0);
    const nice = timeTicks(Math.max(...durations), 4);
    const yLabels = nice.ticks.map(nice.label);
    const left = Math.ceil(widest(svg, yLabels)) + 12;
    const right = 8, top = 18, bottom = height - AXIS;
    const slot = (width - left - right) / runs.length;
    const yOf = (v) => bottom - ((bottom - top) * v) / nice.max;
    nice.ticks.forEach((t, i) => {
      el(svg, "line", { x1: left, x2: width - right, y1: yOf(t), y2: yOf(t), class: "grid" });
      el(svg, "text", { x: left - 6, y: yOf(t) + 4, class: "tick y", "text-anchor": "end" }, yLabels[i]);
    });
    el(svg, "text", { x: width - right, y: 11, class: "axis-title", "text-anchor": "end" }, "duration (linear scale)");
    runs.forEach((r, i) => {
      const x = left + i * slot;
      const a = el(svg, "a", { href: `/?run=${encodeURIComponent(r.run_id)}#timeline` });
      const label = `${r.run_id}: ${r.status}` + (r.duration_s == null ? "" : `, ${seconds(r.duration_s)}`);
      if (r.duration_s == null) {
        el(el(a, "circle", { cx: x + slot / 2, cy: bottom - 5, r: 4, fill: color(r.status), class: "bar" }), "title", {}, label);
      } else {
        const h = Math.max(2, bottom - yOf(r.duration_s));
        el(el(a, "rect", {
          x: x + slot * 0.15, y: bottom - h, width: Math.max(2, slot * 0.7), height: h,
          fill: color(r.status), class: "bar",
        }), "title", {}, label);
      }
    });
    el(svg, "line", { x1: left, x2: width - right, y1: bottom, y2: bottom, class: "axis" });
    const when = (epoch) => {
      const d = new Date(epoch * 1000), p = (n) => String(n).padStart(2, "0");
      return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
    };
    const texts = runs.map((r, i) =>
      el(svg, "text", { x: left + (i + 0.5) * slot, y: bottom + 15, class: "tick", "text-anchor": "middle" }, r.started ? when(r.started) : ""));
    inside(left, width - 1, texts);
    thin(texts, 8);
    el(svg, "text", { x: width - 2, y: bottom + 30, class: "axis-title", "text-anchor": "end" }, "run start (local time), oldest left");
    const legend = document.getElementById("legend-runs");
    legend.textContent = "";
    for (const status of [...new Set(runs.map((r) => r.status))]) {
      const item = document.createElement("span");
      item.className = "key";
      item.style.setProperty("--key", color(status));
      item.textContent = status;
      legend.appendChild(item);
    }
  }

  // A run's nodes as spans from its start; failed nodes link to their log.
  function timelineChart(container, tl) {
    const rows = tl.rows.map((r) => Object.assign({}, r));
    const lanes = rows.length + (tl.folded ? 1 : 0);
    container.dataset.bars = String(lanes);
    if (!lanes) { container.textContent = "no nodes recorded for this run"; return; }
    const height = 8 + lanes * ROW + AXIS;
    const [svg, width] = svgFor(container, height);
    const names = rows.map((r) => r.node_id).concat(tl.folded ? [`+${tl.folded.count} other nodes`] : []);
    const left = Math.min(Math.ceil(widest(svg, names)) + 12, Math.floor(width * 0.35));
    const right = 12;
    const ends = rows.map((r) => r.end ?? r.start).concat(tl.folded ? tl.folded.spans.map((s) => s[1] ?? s[0]) : []);
    const nice = timeTicks(Math.max(...ends), Math.max(2, Math.floor((width - left - right) / 80)));
    const xOf = (v) => left + ((width - left - right) * v) / nice.max;
    const logHref = (node) => `/runs/${encodeURIComponent(tl.run_id)}/nodes/${encodeURIComponent(node)}/log`;
    rows.forEach((r, i) => {
      const y = 8 + i * ROW;
      const end = r.end ?? nice.max;
      const group = r.status === "failed" ? el(svg, "a", { href: logHref(r.node_id), class: "failed" }) : svg;
      const bar = el(group, "rect", {
        x: xOf(r.start), y: y + 3, width: Math.max(2, xOf(end) - xOf(r.start)), height: ROW - 6,
        fill: color(r.status), class: "bar",
      });
      el(bar, "title", {}, `${r.node_id}: ${r.status}, ${seconds(r.start)} to ${r.end == null ? "still running" : seconds(r.end)}` + (r.error ? `\n${r.error}` : ""));
      const name = el(group, "text", { x: left - 8, y: y + ROW / 2 + 4, class: "label", "text-anchor": "end" }, r.node_id);
      fit(name, left - 12, r.node_id);
    });
    if (tl.folded) {
      const y = 8 + rows.length * ROW;
      for (const [start, end, status] of tl.folded.spans) {
        el(svg, "rect", {
          x: xOf(start), y: y + 3, width: Math.max(1, xOf(end ?? nice.max) - xOf(start)), height: ROW - 6,
          fill: status === "failed" ? color("failed") : FOLDED, "fill-opacity": 0.6, class: "bar",
        });
      }
      el(svg, "text", { x: left - 8, y: y + ROW / 2 + 4, class: "label", "text-anchor": "end" }, `+${tl.folded.count} other nodes`);
    }
    xAxis(svg, width, 8 + lanes * ROW + 2, nice.ticks, xOf, nice.label, "time from the run's start");
  }

  function draw() {
    const run = data.run;
    const sub = (id, text) => { document.querySelector(`#${id} .sub`).textContent = text; };
    runsChart(document.querySelector("#chart-runs .chart"), data.runs);
    const slow = data.slowest;
    sub("chart-slowest", run ? `of run ${run.run_id} (${slow.nodes} nodes)` : "");
    barChart(document.querySelector("#chart-slowest .chart"), slow.bars, slow.folded, {
      noun: "nodes (total)", valueLabel: seconds, axisTitle: "duration (linear scale)", time: true, empty: "no timed nodes yet",
    });
    const tables = data.tables;
    sub("chart-tables", tables.run_id ? `as run ${tables.run_id} counted them` : "");
    barChart(document.querySelector("#chart-tables .chart"), tables.bars, tables.folded, {
      noun: "tables (total)", valueLabel: full, axisTitle: "rows (log scale)", log: true,
      fill: "#0969da", empty: "no row counts yet",
    });
    const tl = data.timeline;
    sub("timeline", run ? `of run ${run.run_id} (${run.status}); failed nodes open their log` : "");
    timelineChart(document.querySelector("#timeline .chart"), tl);
    document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
  }

  draw();
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(draw, 150);
  });
})();
