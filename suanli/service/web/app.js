// The Suanli dashboard: polls the API once a second and redraws. No framework, no build step.
"use strict";

const REFRESH_MS = 1000;
const PHASE_COLOURS = {
  compute: "#1f6fb2", bubble: "#d68910", optimizer: "#7d3c98", other: "#7f8c8d",
  tp: "#c0392b", pp: "#e67e22", dp: "#16a085", ep: "#8e44ad", cp: "#2c3e50",
};
let selectedJob = null;

const $ = (selector) => document.querySelector(selector);
const escape = (text) => String(text ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const pct = (value) => (value === undefined ? "–" : `${(100 * value).toFixed(1)}%`);
const num = (value, digits = 0) => (value === undefined ? "–" : Number(value).toLocaleString(undefined, { maximumFractionDigits: digits }));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function stateCell(job) {
  return `<td class="state ${job.state}" data-state="${job.state}">${job.state}</td>`;
}

function row(job, cells) {
  return `<tr data-job-id="${job.id}" data-job-name="${escape(job.name)}">${cells.join("")}${stateCell(job)}</tr>`;
}

function fill(tableId, rows, emptyText) {
  const body = $(`#${tableId} tbody`);
  const columns = $(`#${tableId} thead tr`).children.length;
  body.innerHTML = rows.length ? rows.join("") : `<tr><td colspan="${columns}" class="empty">${emptyText}</td></tr>`;
}

function sparkline(points, now, windowS) {
  if (!points || points.length === 0) return '<svg class="spark"></svg>';
  windowS = Math.min(windowS, Math.max(10, now - points[0][0]));  // a young service fills the width
  const coords = points.map(([t, ratio]) => `${(256 * (1 - (now - t) / windowS)).toFixed(1)},${(26 - 24 * ratio).toFixed(1)}`);
  coords.push(`256,${(26 - 24 * points[points.length - 1][1]).toFixed(1)}`);
  return `<svg class="spark" viewBox="0 0 256 28" preserveAspectRatio="none"><polyline points="${coords.join(" ")}"/></svg>`;
}

function renderPools(nodes, history, now) {
  const windowS = 600;
  $("#pools").innerHTML = nodes.pools.map((pool) => {
    const total = pool.accelerators_total || pool.cpus_total;
    const used = pool.accelerators_total ? pool.accelerators_allocated : pool.cpus_allocated;
    const unit = pool.accelerators_total ? pool.accelerator : "CPUs";
    const ratio = total ? used / total : 0;
    return `<div class="pool" data-pool="${escape(pool.name)}">
      <div><b>${escape(pool.name)}</b><br><small>${pool.nodes} × ${escape(pool.node_type)}</small></div>
      <div class="bar" title="${pct(ratio)}"><div style="width:${(100 * ratio).toFixed(1)}%"></div></div>
      <div>${num(used)} / ${num(total)} ${escape(unit)}</div>
      ${sparkline(history[pool.name], now, windowS)}
    </div>`;
  }).join("");
}

// how much of each accelerator a job holds, as `suanli queue` shows it
function sliceOf(j) {
  const s = j.spec?.sharing;
  if (!s || s.mode === "exclusive") return "";
  if (s.mode === "mig") return ` × ${escape(s.mig_profile)}`;
  const share = s.core_fraction ?? s.memory_fraction;
  return ` × ${s.mode === "fraction" ? "mps" : "time-slice"} ${pct(share)}`;
}

function renderJobs(jobs, now) {
  const running = jobs.filter((j) => j.state === "running" || j.state === "starting");
  const queued = jobs.filter((j) => j.state === "pending");
  const finished = jobs.filter((j) => ["succeeded", "failed", "cancelled"].includes(j.state)).reverse().slice(0, 50);
  fill("running", running.map((j) => row(j, [
    `<td>${j.id}</td>`, `<td>${escape(j.name)}</td>`, `<td>${j.kind}</td>`,
    `<td>${escape(j.placement?.pool ?? "")}</td>`, `<td>${j.placement?.nodes ?? ""}</td>`,
    `<td>${j.placement?.accelerators || "–"}${sliceOf(j)}</td>`, `<td>${num(j.figures.step)}</td>`,
    `<td>${pct(j.figures.mfu)}</td>`, `<td>${pct(j.figures.goodput)}</td>`, `<td>${num(j.figures.tokens_per_s)}</td>`,
  ])), "nothing running");
  fill("queue", queued.map((j) => row(j, [
    `<td>${j.id}</td>`, `<td>${escape(j.name)}</td>`, `<td>${j.kind}</td>`, `<td>${escape(j.queue)}</td>`,
    `<td>${j.priority}</td>`, `<td>${duration(now - j.submitted_at)}</td>`,
  ])), "queue is empty");
  fill("finished", finished.map((j) => row(j, [
    `<td>${j.id}</td>`, `<td>${escape(j.name)}</td>`, `<td>${j.kind}</td>`, `<td>${escape(j.placement?.pool ?? "–")}</td>`,
    `<td>${duration(j.started_at && j.finished_at ? j.finished_at - j.started_at : null)}</td>`,
    `<td>${j.exit_code ?? "–"}</td>`,
  ])), "nothing finished yet");
  const counts = {};
  jobs.forEach((j) => { counts[j.state] = (counts[j.state] || 0) + 1; });
  return counts;
}

function renderEvents(events) {
  $("#events").innerHTML = events.length
    ? events.map((e) => `<li data-job-id="${e.job_id}">${new Date(e.at * 1000).toLocaleTimeString()} · job ${e.job_id}
        <b>${escape(e.name)}</b>: ${e.from} → <span class="state ${e.to}">${e.to}</span> ${escape(e.reason)}</li>`).join("")
    : '<li class="empty">no failures</li>';
}

function breakdown(estimate) {
  const parts = { compute: estimate.compute_s, bubble: estimate.bubble_s, optimizer: estimate.optimizer_s, other: estimate.other_s };
  Object.entries(estimate.exposed_comm_s || {}).forEach(([dim, seconds]) => { parts[dim] = seconds; });
  const total = Object.values(parts).reduce((a, b) => a + (b || 0), 0) || 1;
  const bars = Object.entries(parts).filter(([, s]) => s > 0).map(([name, s]) =>
    `<div style="width:${(100 * s / total).toFixed(2)}%;background:${PHASE_COLOURS[name] || "#555"}" title="${name}: ${s.toFixed(3)} s">${name}</div>`);
  const legend = Object.entries(parts).filter(([, s]) => s > 0).map(([name, s]) => `<span>${name} ${s.toFixed(3)} s</span>`);
  return `<p>step ${estimate.step_time_s.toFixed(3)} s · MFU ${pct(estimate.mfu)} · ${num(estimate.tokens_per_s)} tokens/s ·
    ${estimate.memory_gb_per_gpu.toFixed(1)} GB/GPU · binding: ${escape(estimate.binding || "–")}</p>
    <div class="breakdown" id="step-breakdown">${bars.join("")}</div><div class="legend">${legend.join("")}</div>`;
}

async function renderDetail() {
  if (selectedJob === null) return;
  const [job, logs] = await Promise.all([
    getJson(`/jobs/${selectedJob}`),
    fetch(`/jobs/${selectedJob}/logs`).then((r) => r.text()),
  ]);
  $("#detail-section").hidden = false;
  $("#detail-title").textContent = `${job.id} · ${job.name}`;
  const plan = job.plan
    ? `<h3>Plan</h3><p>${job.plan.gpus} × ${escape(job.plan.accelerator)} on ${escape(job.plan.pool ?? "several pools")}:
        TP${job.plan.layout.tp} PP${job.plan.layout.pp} DP${job.plan.layout.dp}</p>${job.plan.estimate ? breakdown(job.plan.estimate) : ""}`
    : '<p class="empty">no plan: placed by the scheduler alone</p>';
  const history = job.history.map((h) => `<li>${new Date(h.at * 1000).toLocaleTimeString()} ${h.from ?? "·"} → ${h.to} ${escape(h.reason)}</li>`);
  const checkpoints = (job.checkpoints || []).map((c) => `<li>step ${c.step ?? "?"}: ${escape(c.path)}</li>`);
  $("#detail").innerHTML = `
    <p><span class="state ${job.state}">${job.state}</span> ${job.state === "running" ? "" : escape(job.reason)} · queue ${escape(job.queue)} ·
      ${job.placement ? `${job.placement.nodes} node(s) of ${escape(job.placement.pool)}` : "not placed yet"} ·
      ${escape(job.executor ?? "")} ${escape(job.engine_id ?? "")} · attempt ${job.attempt}</p>
    ${plan}
    <h3>History</h3><ul>${history.join("")}</ul>
    ${checkpoints.length ? `<h3>Checkpoints</h3><ul>${checkpoints.join("")}</ul>` : ""}
    <h3>Output</h3><pre id="job-log">${escape(logs.slice(-6000))}</pre>`;
}

async function refresh() {
  try {
    const [health, nodes, history, jobs, events] = await Promise.all([
      getJson("/healthz"), getJson("/nodes"), getJson("/utilization?window_s=600"),
      getJson("/jobs?limit=500"), getJson("/events?failures_only=true&limit=30"),
    ]);
    renderPools(nodes, history, health.now);  // the service's clock: simulated time under --simulate
    const counts = renderJobs(jobs, health.now);
    renderEvents(events);
    $("#summary").textContent = `cluster ${health.cluster} · ${health.executor} executor · ${health.policy} policy · ` +
      Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(" · ");
    await renderDetail();
  } catch (error) {
    $("#summary").textContent = `cannot reach the service: ${error.message}`;
  }
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-job-id]");
  if (target) {
    selectedJob = Number(target.dataset.jobId);
    renderDetail();
  }
});

refresh();
setInterval(refresh, REFRESH_MS);
