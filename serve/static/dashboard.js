// Draws the dashboard's plots with uPlot from the JSON the server embedded in the page.
// Each plot div gets data-points = how many values it drew (the browser test reads it).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("dashboard-data").textContent);
  const palette = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#6e7781"];
  const width = (el) => Math.max(360, el.clientWidth || 420);

  function draw(id, opts, series) {
    const el = document.getElementById(id);
    const points = series.slice(1).reduce((n, s) => n + s.filter((v) => v != null).length, 0);
    el.dataset.points = String(points);
    if (!series[0].length) { el.textContent = "no data yet"; return; }
    new uPlot(Object.assign({ width: width(el), height: 240 }, opts), series, el);
  }

  const runs = data.runs;
  draw("plot-runs", {
    series: [{}, { label: "duration s", stroke: palette[0], points: { show: true, size: 7 } }],
  }, [runs.x, runs.duration_s]);

  const nodes = data.nodes;
  const idx = nodes.labels.map((_, i) => i);
  draw("plot-nodes", {
    scales: { x: { time: false } },
    axes: [{ values: (u, ticks) => ticks.map((t) => (nodes.labels[t] || "").split(".").pop()) }, {}],
    series: [{}, {
      label: "seconds", stroke: palette[2], fill: "rgba(26,127,55,0.3)",
      paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false },
    }],
  }, [idx, nodes.duration_s]);

  const tables = data.tables;
  const names = Object.keys(tables.series);
  draw("plot-tables", {
    series: [{}].concat(names.map((n, i) => ({
      label: n, stroke: palette[i % palette.length], points: { show: true, size: 6 }, spanGaps: true,
    }))),
    scales: { y: { distr: 3 } },
    axes: [{}, { size: 70 }],
    legend: { live: false },
  }, [tables.x].concat(names.map((n) => tables.series[n])));
})();
