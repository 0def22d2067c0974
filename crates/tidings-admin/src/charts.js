"use strict";
// The dashboard's charts, drawn with the bundled uPlot from GET /history: queue depth,
// handled and failed per second, and critical time, over the sampler's window.

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777",
  "#4b5563", "#65a30d", "#ea580c"];
const charts = {};

function fmtNumber(v) {
  if (v === null || v === undefined) return "-";
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString();
  if (a >= 10) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toFixed(2);
}

function chartWidth(el) {
  return Math.max(300, Math.floor(el.getBoundingClientRect().width) - 4);
}

// Draws (or updates) the chart in `#id`: `t` in Unix seconds, `series` a map name -> values.
function drawChart(id, title, t, series, unit) {
  const el = document.getElementById(id);
  const names = Object.keys(series).filter((n) => series[n].some((v) => v !== null));
  el.dataset.points = String(t.length);
  el.dataset.series = String(names.length);
  const key = names.join("\u0000");
  let c = charts[id];
  if (!t.length || !names.length) {
    if (c) { c.plot.destroy(); delete charts[id]; }
    el.replaceChildren();
    const h = document.createElement("h3"); h.textContent = title;
    const p = document.createElement("p"); p.className = "muted empty"; p.textContent = "no data yet";
    el.append(h, p);
    return;
  }
  const data = [t, ...names.map((n) => series[n])];
  if (c && c.key === key) { c.plot.setData(data); return; }
  if (c) c.plot.destroy();
  el.replaceChildren();
  const opts = {
    title: title,
    width: chartWidth(el),
    height: 200,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    series: [{}, ...names.map((n, i) => ({
      label: n,
      stroke: PALETTE[i % PALETTE.length],
      width: 2,
      value: (u, v) => fmtNumber(v) + (v === null || v === undefined ? "" : unit),
    }))],
    axes: [{}, { values: (u, vals) => vals.map(fmtNumber), size: 60 }],
    legend: { live: true },
  };
  c = charts[id] = { key: key, plot: new uPlot(opts, data, el) };
}

function pick(map, field) {
  const out = {};
  for (const [name, s] of Object.entries(map)) out[name] = s[field];
  return out;
}

async function loadCharts() {
  const h = await api("history");
  drawChart("chart-depth", "Queue depth (ready)", h.depth_t, pick(h.depth, "ready"), "");
  drawChart("chart-handled", "Handled per second", h.rates_t, pick(h.rates, "handled"), "/s");
  drawChart("chart-failed", "Failed per second", h.rates_t, pick(h.rates, "failed"), "/s");
  drawChart("chart-critical", "Critical time (sent → handled), ms", h.rates_t, pick(h.rates, "critical_ms"), " ms");
}

window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) {
    c.plot.setSize({ width: chartWidth(document.getElementById(id)), height: 200 });
  }
});
