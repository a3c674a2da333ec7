// SVG charts drawn by our own code (no library, no build step): lines over time or steps, a timeline
// of events, and stacked bars. Each returns markup; the dashboard puts it in the page.
"use strict";

const PALETTE = ["#1f6fb2", "#c0392b", "#16a085", "#d68910", "#7d3c98", "#2c3e50", "#e67e22", "#7f8c8d"];
const CHART = { width: 520, height: 170, left: 46, right: 10, top: 10, bottom: 22 };

function finite(value) {
  return typeof value === "number" && Number.isFinite(value);
}

// about `count` round values covering [low, high]
function ticks(low, high, count = 4) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const first = Math.ceil(low / step) * step;
  const out = [];
  for (let v = first; v <= high + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function shortNumber(value) {
  const size = Math.abs(value);
  if (size >= 1e9) return `${(value / 1e9).toFixed(1)}G`;
  if (size >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (size >= 1e4) return `${(value / 1e3).toFixed(0)}k`;
  if (size >= 100 || value === Math.round(value)) return value.toFixed(0);
  return String(Number(value.toPrecision(3)));
}

// a time of day, with the date when the window spans more than a day's part
function timeLabel(spanS) {
  const options = spanS > 12 * 3600 ? { month: "short", day: "numeric", hour: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return (seconds) => new Date(seconds * 1000).toLocaleString([], options);
}

function emptyChart(id, text) {
  const { width, height } = CHART;
  return `<svg class="chart empty-chart" id="${id}" viewBox="0 0 ${width} ${height}" data-points="0">
    <text x="${width / 2}" y="${height / 2}" text-anchor="middle">${text}</text></svg>`;
}

// series: [{name, points: [[x, y], …], colour?, dashed?}]; options: {id, x0, x1, y0, y1, xFormat,
// yFormat, markers: [{x, label, colour, jobId}], step: draw as a step function (a level until the next change)}
function lineChart(series, options) {
  const { width, height, left, right, top, bottom } = CHART;
  const drawn = series.map((s) => ({ ...s, points: (s.points || []).filter(([x, y]) => finite(x) && finite(y)) }))
    .filter((s) => s.points.length);
  const count = drawn.reduce((n, s) => n + s.points.length, 0);
  if (!count) return emptyChart(options.id, options.emptyText || "no data yet");
  const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
  const ys = drawn.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = options.x0 ?? Math.min(...xs);
  const x1 = Math.max(options.x1 ?? Math.max(...xs), x0 + 1e-9);
  const y0 = options.y0 ?? Math.min(0, ...ys);
  let y1 = options.y1 ?? Math.max(...ys);
  if (!(y1 > y0)) y1 = y0 + 1;
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const sy = (y) => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);
  const xFormat = options.xFormat || shortNumber;
  const yFormat = options.yFormat || shortNumber;
  const grid = ticks(y0, y1, 3).map((v) => `<line class="grid" x1="${left}" x2="${width - right}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}"/>
    <text class="tick" x="${left - 4}" y="${(sy(v) + 3).toFixed(1)}" text-anchor="end">${yFormat(v)}</text>`);
  const xTicks = ticks(x0, x1, 4).map((v) => `<text class="tick" x="${sx(v).toFixed(1)}" y="${height - 6}" text-anchor="middle">${xFormat(v)}</text>`);
  const lines = drawn.map((s, i) => {
    const colour = s.colour || PALETTE[i % PALETTE.length];
    const coords = [];
    s.points.forEach(([x, y], k) => {
      if (options.step && k > 0) coords.push(`${sx(x).toFixed(1)},${sy(s.points[k - 1][1]).toFixed(1)}`);
      coords.push(`${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    });
    if (options.step && options.x1 !== undefined) coords.push(`${sx(x1).toFixed(1)},${sy(s.points[s.points.length - 1][1]).toFixed(1)}`);
    const dash = s.dashed ? ' stroke-dasharray="5 4"' : "";
    return `<polyline data-series="${s.name}" points="${coords.join(" ")}" stroke="${colour}"${dash}><title>${s.name}</title></polyline>`;
  });
  const markers = (options.markers || []).filter((m) => finite(m.x) && m.x >= x0 && m.x <= x1).map((m) =>
    `<line class="marker" x1="${sx(m.x).toFixed(1)}" x2="${sx(m.x).toFixed(1)}" y1="${top}" y2="${height - bottom}" stroke="${m.colour || "#7f8c8d"}"><title>${m.label}</title></line>`);
  const legend = drawn.map((s, i) => `<span><i style="background:${s.colour || PALETTE[i % PALETTE.length]}"></i>${s.name}</span>`);
  return `<svg class="chart" id="${options.id}" viewBox="0 0 ${width} ${height}" data-points="${count}">
      ${grid.join("")}${xTicks.join("")}
      <line class="axis" x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${height - bottom}"/>
      ${markers.join("")}${lines.join("")}
    </svg><div class="chart-legend">${legend.join("")}</div>`;
}

// failures (red) and recoveries (orange) as dots on a time line; each dot opens its job
function timeline(failures, recoveries, x0, x1, id) {
  const { width, right } = CHART;
  const left = 64;
  const height = 60;
  const label = timeLabel(x1 - x0);
  const sx = (x) => left + ((x - x0) / Math.max(x1 - x0, 1e-9)) * (width - left - right);
  const dots = (events, y, colour, label) => events.filter((e) => e.at >= x0 && e.at <= x1).map((e) =>
    `<circle class="event" cx="${sx(e.at).toFixed(1)}" cy="${y}" r="4" fill="${colour}" data-job-id="${e.job_id}">
      <title>${label(e.at)} job ${e.job_id} ${label}: ${escapeText(e.reason || "")}</title></circle>`);
  const all = [...dots(failures, 18, "#c0392b", "failed"), ...dots(recoveries, 40, "#d68910", "re-queued")];
  return `<svg class="chart timeline" id="${id}" viewBox="0 0 ${width} ${height}" data-points="${all.length}">
      <text class="tick" x="${left - 4}" y="21" text-anchor="end">failed</text>
      <text class="tick" x="${left - 4}" y="43" text-anchor="end">re-queued</text>
      <line class="grid" x1="${left}" x2="${width - right}" y1="18" y2="18"/>
      <line class="grid" x1="${left}" x2="${width - right}" y1="40" y2="40"/>
      <text class="tick" x="${left}" y="${height - 4}">${label(x0)}</text>
      <text class="tick" x="${width - right}" y="${height - 4}" text-anchor="end">${label(x1)}</text>
      ${all.join("")}</svg>`;
}

// rows: [{label, parts: {name: value}}], colours: {name: colour}; horizontal stacked bars
function stackedBars(rows, colours, id) {
  if (!rows.length) return emptyChart(id, "no jobs yet");
  const { width, left, right } = CHART;
  const rowHeight = 20;
  const height = rows.length * rowHeight + 8;
  const most = Math.max(1, ...rows.map((r) => Object.values(r.parts).reduce((a, b) => a + b, 0)));
  const labelWidth = 80;
  const scale = (v) => (v / most) * (width - left - right - labelWidth);
  const bars = rows.map((r, i) => {
    let x = labelWidth;
    const y = 4 + i * rowHeight;
    const pieces = Object.entries(r.parts).filter(([, v]) => v > 0).map(([name, v]) => {
      const piece = `<rect x="${x.toFixed(1)}" y="${y}" width="${Math.max(scale(v), 1).toFixed(1)}" height="14" fill="${colours[name]}"><title>${escapeText(r.label)}: ${v} ${name}</title></rect>`;
      x += scale(v);
      return piece;
    });
    const total = Object.entries(r.parts).map(([name, v]) => `${v} ${name}`).join(", ");
    return `<text class="tick" x="0" y="${y + 11}">${escapeText(r.label)}</text>${pieces.join("")}
      <text class="tick" x="${(x + 4).toFixed(1)}" y="${y + 11}">${total}</text>`;
  });
  return `<svg class="chart bars" id="${id}" viewBox="0 0 ${width} ${height}" data-points="${rows.length}">${bars.join("")}</svg>`;
}

function escapeText(text) {
  return String(text ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
