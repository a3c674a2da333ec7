// The Suanli dashboard: polls the API once a second and redraws. No framework, no build step; the
// charts are SVG drawn by charts.js. Times are the service's own clock (`/ops/overview`'s `now`),
// which runs ahead of the wall under --simulate.
"use strict";

const REFRESH_MS = 1000;
const PAGE_SIZE = 50;
const QUICK_ROWS = 50;
const PHASE_COLOURS = {
  compute: "#1f6fb2", bubble: "#d68910", optimizer: "#7d3c98", other: "#7f8c8d",
  tp: "#c0392b", pp: "#e67e22", dp: "#16a085", ep: "#8e44ad", cp: "#2c3e50",
};
const view = { job: null, offset: 0, total: 0, windowS: null, busy: false };

const $ = (selector) => document.querySelector(selector);
const escape = escapeText;
const known = (value) => value !== undefined && value !== null && Number.isFinite(Number(value));
const pct = (value) => (known(value) ? `${(100 * value).toFixed(1)}%` : "–");
const num = (value, digits = 0) => (known(value) ? Number(value).toLocaleString(undefined, { maximumFractionDigits: digits }) : "–");

function duration(seconds) {
  if (!known(seconds)) return "–";
  seconds = Math.max(0, seconds);
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

// A service started with --read-token answers 401 to reads without it: the page asks for the token
// once and keeps it for this browser tab (sessionStorage), sending it as a bearer token.
const TOKEN_KEY = "suanli-token";

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (response.status === 401) {
    $("#token-form").hidden = false;
    throw new Error(token ? "the token was refused; enter the read token" : "this service needs a read token");
  }
  return response;
}

async function getJson(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function query(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
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

function shownOf(page) {
  return page.total > page.jobs.length ? `(${page.jobs.length} of ${num(page.total)})` : `(${num(page.total)})`;
}

function renderPools(nodes) {
  $("#pools").innerHTML = nodes.pools.map((pool) => {
    const gpus = pool.accelerators_total > 0;
    const total = gpus ? pool.accelerators_total : pool.cpus_total;
    const used = gpus ? pool.accelerators_allocated : pool.cpus_allocated;
    const ratio = total ? used / total : 0;
    return `<div class="pool" data-pool="${escape(pool.name)}">
      <div><b>${escape(pool.name)}</b><br><small>${pool.nodes} × ${escape(pool.node_type)}</small></div>
      <div class="bar" title="${pct(ratio)}"><div style="width:${(100 * ratio).toFixed(1)}%"></div></div>
      <div>${num(used)} / ${num(total)} ${escape(gpus ? pool.accelerator : "CPUs")}</div>
    </div>`;
  }).join("");
}

function renderCluster(series, overview) {
  const x0 = series.since;
  const x1 = series.now;
  const pools = Object.entries(series.utilization).map(([name, points]) => ({ name, points }));
  $("#utilization-chart").innerHTML = lineChart(pools, {
    id: "chart-utilization", x0, x1, y0: 0, y1: 1, step: true, xFormat: timeLabel(x1 - x0), yFormat: (v) => `${Math.round(100 * v)}%`,
    emptyText: "no samples in this window",
  });
  $("#pending-chart").innerHTML = lineChart([{ name: "pending", points: series.pending, colour: "#d68910" }], {
    id: "chart-pending", x0, x1, y0: 0, y1: Math.max(4, ...series.pending.map((p) => p[1])), step: true,
    xFormat: timeLabel(x1 - x0),
  });
  const queues = Object.entries(overview.queues).sort().map(([label, states]) => ({
    label,
    parts: { running: (states.running || 0) + (states.starting || 0), pending: states.pending || 0 },
  })).filter((r) => r.parts.running || r.parts.pending);
  $("#queues-chart").innerHTML = queues.length
    ? stackedBars(queues, { running: "#1f6fb2", pending: "#d68910" }, "chart-queues")
    : emptyChart("chart-queues", "no job running or pending");
  $("#events-chart").innerHTML = timeline(series.failures, series.recoveries, x0, x1, "chart-events");
}

function gpuCell(node, gpu) {
  const jobs = gpu.jobs.length ? ` data-job-id="${gpu.jobs[0]}"` : "";
  const what = node.accelerator === "cpu" ? "node" : `GPU ${gpu.gpu}`;
  const held = gpu.jobs.length ? `job ${gpu.jobs.join(", ")} (${pct(gpu.used)}${gpu.mode && gpu.mode !== "exclusive" ? ` ${gpu.mode}` : ""})` : "idle";
  return `<span class="gpu ${gpu.state}" data-node="${escape(node.name)}" data-gpu="${gpu.gpu}"${jobs}
    title="${escape(node.name)} ${what}: ${held}"></span>`;
}

function renderGrid(grid) {
  const byPool = {};
  grid.nodes.forEach((node) => { (byPool[node.pool] ||= []).push(node); });
  $("#node-grid").innerHTML = Object.entries(byPool).map(([pool, nodes]) => {
    const busy = nodes.reduce((n, node) => n + node.gpus.filter((g) => g.state !== "idle").length, 0);
    const cells = nodes.reduce((n, node) => n + node.gpus.length, 0);
    return `<div class="grid-pool" data-pool="${escape(pool)}"><h3>${escape(pool)} · ${escape(nodes[0].accelerator)} · ${busy} / ${cells} in use</h3>
      <div class="nodes">${nodes.map((node) => `<div class="node" data-node="${escape(node.name)}" title="${escape(node.name)}">
        ${node.gpus.map((gpu) => gpuCell(node, gpu)).join("")}</div>`).join("")}</div></div>`;
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

function ran(j, now) {
  if (!j.started_at) return null;
  return (j.finished_at ?? now) - j.started_at;
}

function renderQuick(running, queued, finished, now) {
  $("#running-count").textContent = shownOf(running);
  $("#queue-count").textContent = shownOf(queued);
  $("#finished-count").textContent = shownOf(finished);
  fill("running", running.jobs.map((j) => row(j, [
    `<td>${j.id}</td>`, `<td>${escape(j.name)}</td>`, `<td>${j.kind}</td>`,
    `<td>${escape(j.placement?.pool ?? "")}</td>`, `<td>${j.placement?.nodes ?? ""}</td>`,
    `<td>${j.placement?.accelerators || "–"}${sliceOf(j)}</td>`, `<td>${num(j.figures.step)}</td>`,
    `<td>${pct(j.figures.mfu)}</td>`, `<td>${pct(j.figures.goodput)}</td>`, `<td>${num(j.figures.tokens_per_s)}</td>`,
    `<td>${duration(ran(j, now))}</td>`,
  ])), "nothing running");
  fill("queue", queued.jobs.map((j) => row(j, [
    `<td>${j.id}</td>`, `<td>${escape(j.name)}</td>`, `<td>${j.kind}</td>`, `<td>${escape(j.queue)}</td>`,
    `<td>${j.priority}</td>`, `<td>${duration(now - j.submitted_at)}</td>`,
    `<td class="why" title="Resources: fits nowhere now; Priority: fits, others go first">${escape(j.pending_reason ?? "–")}</td>`,
  ])), "queue is empty");
  fill("finished", finished.jobs.map((j) => row(j, [
    `<td>${j.id}</td>`, `<td>${escape(j.name)}</td>`, `<td>${j.kind}</td>`, `<td>${escape(j.placement?.pool ?? "–")}</td>`,
    `<td>${duration(ran(j, now))}</td>`, `<td>${j.exit_code ?? "–"}</td>`,
  ])), "nothing finished yet");
}

function renderAllJobs(page, now) {
  view.total = page.total;
  const first = page.total ? page.offset + 1 : 0;
  $("#page-info").textContent = `jobs ${num(first)}–${num(page.offset + page.jobs.length)} of ${num(page.total)}`;
  $("#page-prev").disabled = page.offset === 0;
  $("#page-first").disabled = page.offset === 0;
  $("#page-next").disabled = page.offset + page.jobs.length >= page.total;
  $("#page-last").disabled = page.offset + page.jobs.length >= page.total;
  fill("jobs", page.jobs.map((j) => row(j, [
    `<td>${j.id}</td>`, `<td>${escape(j.name)}</td>`, `<td>${j.kind}</td>`, `<td>${escape(j.queue)}</td>`,
    `<td>${escape(j.placement?.pool ?? "–")}</td>`, `<td>${j.placement?.accelerators || "–"}${sliceOf(j)}</td>`,
    `<td>${duration(now - j.submitted_at)} ago</td>`, `<td>${duration(ran(j, now))}</td>`, `<td>${j.restarts}</td>`,
    `<td>${j.exit_code ?? "–"}</td>`, `<td class="reason">${escape(j.pending_reason ?? j.reason)}</td>`,
  ])), "no job matches");
}

function renderEvents(events) {
  $("#events").innerHTML = events.length
    ? events.map((e) => `<li data-job-id="${e.job_id}">${new Date(e.at * 1000).toLocaleTimeString()} · job ${e.job_id}
        <b>${escape(e.name)}</b>: ${e.from} → <span class="state ${e.to}">${e.to}</span> ${escape(e.reason)}</li>`).join("")
    : '<li class="empty">no failures</li>';
}

function fillOptions(select, values) {
  const have = new Set([...select.options].map((o) => o.value));
  values.filter((v) => !have.has(v)).forEach((v) => select.add(new Option(v, v)));
}

function filters() {
  const form = $("#filters");
  return { state: form.state.value, queue: form.queue.value, pool: form.pool.value, kind: form.kind.value };
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

function jobCharts(series) {
  const steps = series.steps;
  if (!Object.keys(steps).length) return '<p class="empty">no step metrics reported (yet): a command job or a simulated run reports none</p>';
  const markers = series.checkpoints.filter((c) => known(c.step)).map((c) => ({ x: c.step, label: `checkpoint at step ${c.step}`, colour: "#16a085" }));
  const lastStep = Math.max(...Object.values(steps).flatMap((points) => points.map((p) => p[0])));
  const firstStep = Math.min(...Object.values(steps).flatMap((points) => points.map((p) => p[0])));
  const predicted = known(series.predicted_step_time_s)
    ? [{ name: "planned", points: [[firstStep, series.predicted_step_time_s], [lastStep, series.predicted_step_time_s]], colour: "#7f8c8d", dashed: true }]
    : [];
  const panel = (title, chart) => `<div class="job-chart"><h3>${title}</h3>${chart}</div>`;
  return `<div class="job-charts">
    ${panel("Loss", lineChart([{ name: "loss", points: steps.loss }], { id: "chart-loss", markers, y0: undefined }))}
    ${panel("Tokens/s", lineChart([{ name: "tokens/s", points: steps.tokens_per_s }], { id: "chart-tokens", markers }))}
    ${panel("MFU and goodput", lineChart([
      { name: "MFU", points: steps.mfu }, { name: "goodput", points: steps.goodput, colour: "#16a085" },
    ], { id: "chart-mfu", y0: 0, yFormat: (v) => `${Math.round(100 * v)}%` }))}
    ${panel("Step time: measured vs planned", lineChart([
      { name: "measured", points: steps.step_time_s }, ...predicted,
    ], { id: "chart-step-time", y0: 0, yFormat: (v) => `${shortNumber(v)} s` }))}
  </div>`;
}

async function renderDetail() {
  if (view.job === null) return;
  const id = view.job;
  const [job, series, logs] = await Promise.all([
    getJson(`/jobs/${id}`), getJson(`/ops/jobs/${id}/series`), api(`/jobs/${id}/logs`).then((r) => r.text()),
  ]);
  if (view.job !== id) return;
  $("#detail-section").hidden = false;
  $("#detail-title").textContent = `${job.id} · ${job.name}`;
  const plan = job.plan
    ? `<h3>Plan</h3><p>${job.plan.gpus} × ${escape(job.plan.accelerator)} on ${escape(job.plan.pool ?? "several pools")}:
        TP${job.plan.layout.tp} PP${job.plan.layout.pp} DP${job.plan.layout.dp}</p>${job.plan.estimate ? breakdown(job.plan.estimate) : ""}`
    : '<p class="empty">no plan: placed by the scheduler alone</p>';
  const history = job.history.map((h) => `<li>${new Date(h.at * 1000).toLocaleTimeString()} ${h.from ?? "·"} → ${h.to} ${escape(h.reason)}</li>`);
  const checkpoints = series.checkpoints.map((c) => `<li>step ${c.step ?? "?"}: ${escape(c.path)}</li>`);
  const restarts = series.restarts.map((r) => `<li>${new Date(r.at * 1000).toLocaleTimeString()}: ${escape(r.reason)}</li>`);
  $("#detail").innerHTML = `
    <p><span class="state ${job.state}">${job.state}</span> ${job.state === "running" ? "" : escape(job.reason)} · queue ${escape(job.queue)} ·
      ${job.placement ? `${job.placement.nodes} node(s) of ${escape(job.placement.pool)}` : "not placed yet"} ·
      ${escape(job.executor ?? "")} ${escape(job.engine_id ?? "")} · attempt ${job.attempt}</p>
    ${plan}`;
  $("#job-charts").innerHTML = jobCharts(series);
  $("#detail-rest").innerHTML = `
    <h3>History</h3><ul>${history.join("")}</ul>
    <h3>Checkpoints</h3>${checkpoints.length ? `<ul>${checkpoints.join("")}</ul>` : '<p class="empty">none</p>'}
    <h3>Restarts</h3>${restarts.length ? `<ul>${restarts.join("")}</ul>` : '<p class="empty">none</p>'}
    <h3>Output</h3><pre id="job-log">${escape(logs.slice(-6000))}</pre>`;
}

async function refresh() {
  if (view.busy) return;
  view.busy = true;
  try {
    const overview = await getJson("/ops/overview");
    view.windowS ??= overview.executor === "simulated" ? 86400 : 3600;
    $("#window").value = String(view.windowS);
    const [nodes, series, grid, running, queued, finished, all, events] = await Promise.all([
      getJson("/nodes"), getJson(`/ops/series?window_s=${view.windowS}`), getJson("/ops/gpus").catch(() => ({ nodes: [] })),
      getJson(`/ops/jobs?${query({ state: "starting,running", limit: QUICK_ROWS, order: "oldest" })}`),
      getJson(`/ops/jobs?${query({ state: "pending", limit: QUICK_ROWS, order: "oldest" })}`),
      getJson(`/ops/jobs?${query({ state: "finished", limit: QUICK_ROWS })}`),
      getJson(`/ops/jobs?${query({ ...filters(), offset: view.offset, limit: PAGE_SIZE })}`),
      getJson("/events?failures_only=true&limit=30"),
    ]);
    const now = overview.now;
    renderPools(nodes);
    renderCluster(series, overview);
    renderGrid(grid);
    renderQuick(running, queued, finished, now);
    renderAllJobs(all, now);
    renderEvents(events);
    fillOptions($("#filters").queue, Object.keys(overview.queues).sort());
    fillOptions($("#filters").pool, nodes.pools.map((p) => p.name));
    $("#summary").textContent = `cluster ${overview.cluster} · ${overview.executor} executor · ${overview.policy} policy · ` +
      Object.entries(overview.states).map(([s, n]) => `${num(n)} ${s}`).join(" · ");
    await renderDetail();
  } catch (error) {
    $("#summary").textContent = `cannot reach the service: ${error.message}`;
  } finally {
    view.busy = false;
  }
}

function goTo(offset) {
  view.offset = Math.max(0, offset);
  refresh();
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-job-id]");
  if (target) {
    view.job = Number(target.dataset.jobId);
    renderDetail().then(() => $("#detail-section").scrollIntoView({ block: "start" }));
  }
});
$("#detail-close").addEventListener("click", () => { view.job = null; $("#detail-section").hidden = true; });
$("#page-first").addEventListener("click", () => goTo(0));
$("#page-prev").addEventListener("click", () => goTo(view.offset - PAGE_SIZE));
$("#page-next").addEventListener("click", () => goTo(view.offset + PAGE_SIZE));
$("#page-last").addEventListener("click", () => goTo(Math.floor(Math.max(view.total - 1, 0) / PAGE_SIZE) * PAGE_SIZE));
$("#filters").addEventListener("change", () => goTo(0));
$("#window").addEventListener("change", (event) => { view.windowS = Number(event.target.value); refresh(); });
$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value);
  $("#token").value = "";
  $("#token-form").hidden = true;
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
