// The operations page: the service's figures over the last hour, drawn on canvases by this file
// (no chart library, nothing from a CDN), the queues, the workers and what each runs, the latest
// failures with a retry button, and a task's timeline. It reads /v1/status and /v1/ops/* with the
// API key the page at / keeps (localStorage), and refreshes itself every few seconds.
"use strict";

const KEY = "aitasks-api-key";
// The priority lanes, each a color of its own (the queues take the others).
const LANES = { interactive: "#c2255c", default: "#3b5bdb", batch: "#868e96" };
const COLORS = ["#3b5bdb", "#e8590c", "#2f9e44", "#c2255c", "#1098ad", "#7048e8", "#f08c00", "#495057"];
const REFRESH_SECONDS = Number(new URLSearchParams(location.search).get("refresh")) || 3;
const state = { samples: [], lastAt: null, now: null, span: 3600, status: null, colors: new Map(),
                refreshing: false, paused: false, updatedAt: null };
const $ = (id) => document.getElementById(id);

// --- the API, with the key the page at / keeps -------------------------------------------------

class NeedsKey extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = localStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) throw new NeedsKey("this server needs an API key");
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

function askForKey() {
  const entered = prompt("This server needs an API key:");
  if (entered && entered.trim()) {
    localStorage.setItem(KEY, entered.trim());
    return true;
  }
  return false;
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

// --- numbers and times --------------------------------------------------------------------------

function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value === 0) return "0";
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return String(Number(value.toPrecision(2)));
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 120) return `${fmt(value / 60)} min`;
  return `${fmt(value)} s`;
}

function ago(iso) {
  if (!iso) return "–";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? `${Math.round(s)} s ago` : new Date(iso).toLocaleTimeString();
}

function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function colorOf(queue) {
  if (!state.colors.has(queue)) state.colors.set(queue, COLORS[state.colors.size % COLORS.length]);
  return state.colors.get(queue);
}

// --- charts -------------------------------------------------------------------------------------

// Lines of [time, value] points (null: a gap) over [tMin, tMax], on a canvas sized to its box.
function drawChart(canvas, lines, tMin, tMax) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 48, right = 8, top = 8, bottom = 18;
  const plotW = Math.max(10, width - left - right), plotH = Math.max(10, height - top - bottom);
  let max = 0, points = 0;
  for (const line of lines) for (const [, v] of line.points) if (v !== null) max = Math.max(max, v);
  const yMax = niceCeiling(max);
  const x = (t) => left + ((t - tMin) / Math.max(1, tMax - tMin)) * plotW;
  const y = (v) => top + plotH * (1 - v / yMax);

  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const value = (yMax * i) / 4, at = y(value);
    ctx.strokeStyle = "#eef0f3";
    ctx.beginPath(); ctx.moveTo(left, at); ctx.lineTo(left + plotW, at); ctx.stroke();
    ctx.fillStyle = "#667085"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ctx.fillText(fmt(value), left - 4, at);
  }
  const span = tMax - tMin;
  ctx.textBaseline = "top";
  for (const [share, align] of [[0, "left"], [0.5, "center"], [1, "right"]]) {
    const back = span * (1 - share);
    const label = share === 1 ? "now" : span >= 120 ? `-${Math.round(back / 60)} min` : `-${Math.round(back)} s`;
    ctx.textAlign = align;
    ctx.fillText(label, left + plotW * share, top + plotH + 4);
  }

  ctx.lineWidth = 1.8;
  for (const line of lines) {
    ctx.strokeStyle = ctx.fillStyle = line.color;
    ctx.setLineDash(line.dashed ? [5, 4] : []);
    ctx.beginPath();
    let pen = false, alone = null;
    for (const [t, v] of line.points) {
      if (v === null) { pen = false; continue; }
      points += 1;
      if (pen) { ctx.lineTo(x(t), y(v)); alone = null; } else { ctx.moveTo(x(t), y(v)); alone = [t, v]; pen = true; }
    }
    ctx.stroke();
    if (alone) { ctx.beginPath(); ctx.arc(x(alone[0]), y(alone[1]), 2.5, 0, 2 * Math.PI); ctx.fill(); }
  }
  ctx.setLineDash([]);
  canvas.dataset.points = String(points);
  canvas.dataset.max = String(max);
}

// The queues that had anything to show in the hour: the others would be flat lines at zero.
function activeQueues() {
  const active = new Set();
  for (const sample of state.samples) {
    for (const [name, q] of Object.entries(sample.queues)) {
      if (q.finished || q.failed || q.depth || q.oldest_waiting) active.add(name);
    }
  }
  return [...active].sort();
}

function seriesOf(queue, pick) {
  return state.samples.map((s) => {
    const q = s.queues[queue];
    return [s.at, q ? pick(q, s) : null];
  });
}

function drawCharts() {
  const queues = activeQueues();
  const tMax = state.now || Date.now() / 1000;
  const first = state.samples.length ? state.samples[0].at : tMax;
  const tMin = Math.max(tMax - state.span, Math.min(first, tMax - 60));
  const per = (pick, extra = {}) => queues.map((name) => ({ color: colorOf(name), points: seriesOf(name, pick), ...extra }));
  drawChart($("chart-finished"), per((q, s) => q.finished / Math.max(s.seconds, 0.001)), tMin, tMax);
  drawChart($("chart-failures"), per((q, s) => (q.failed * 60) / Math.max(s.seconds, 0.001)), tMin, tMax);
  drawChart($("chart-depth"), per((q) => q.depth), tMin, tMax);
  drawChart($("chart-oldest"), per((q) => q.oldest_waiting), tMin, tMax);
  drawChart($("chart-wait"), [...per((q) => q.wait_p50), ...per((q) => q.wait_p95, { dashed: true })], tMin, tMax);
  drawChart($("chart-run"), [...per((q) => q.run_p50), ...per((q) => q.run_p95, { dashed: true })], tMin, tMax);
  const lane = (pick) => Object.entries(LANES).map(([name, color]) => ({
    color, points: state.samples.map((s) => [s.at, s.lanes && s.lanes[name] ? pick(s.lanes[name]) : null]),
  }));
  drawChart($("chart-lanes"), lane((l) => l.depth), tMin, tMax);
  drawChart($("chart-lane-oldest"), lane((l) => l.oldest_waiting), tMin, tMax);
  const legend = $("legend");
  legend.replaceChildren(...queues.map((name) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = colorOf(name);
    item.append(swatch, name);
    return item;
  }));
  if (!queues.length) legend.textContent = "No traffic in the last hour yet.";
}

// --- tables -------------------------------------------------------------------------------------

function cell(content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.append(content); else td.textContent = content ?? "–";
  return td;
}

function taskLink(taskId) {
  const a = document.createElement("a");
  a.className = "task";
  a.textContent = taskId.slice(0, 12);
  a.title = taskId;
  a.href = `#task=${taskId}`;
  a.addEventListener("click", (event) => { event.preventDefault(); showTimeline(taskId); });
  return a;
}

function fill(table, rows, columns, empty) {
  const body = table.querySelector("tbody");
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(empty);
    td.colSpan = columns;
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...rows);
}

function latestOf(queue, field) {
  for (let i = state.samples.length - 1; i >= 0; i--) {
    const q = state.samples[i].queues[queue];
    if (q && q[field] !== null && q[field] !== undefined) return q[field];
  }
  return null;
}

function renderQueues(status) {
  const rows = status.queues.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "queue";
    const lanes = (status.lanes || []).filter((l) => l.queue === q.name && l.depth)
      .map((l) => `${l.lane} ${l.depth} (${seconds(l.oldest_waiting_seconds)})`).join(" · ");
    tr.append(
      cell(q.name), cell(q.depth === null ? "unknown" : String(q.depth)),
      cell(seconds(q.oldest_waiting_seconds)), cell(String(q.finished_last_minute)),
      cell(`${seconds(latestOf(q.name, "wait_p50"))} / ${seconds(latestOf(q.name, "wait_p95"))}`),
      cell(`${seconds(latestOf(q.name, "run_p50"))} / ${seconds(latestOf(q.name, "run_p95"))}`),
      cell(lanes || "–"),
    );
    return tr;
  });
  fill($("queues"), rows, 7, "No queues.");
}

function renderWorkers(status) {
  const rows = status.workers.map((w) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "worker";
    const running = document.createElement("span");
    for (const task of w.running || []) {
      const item = document.createElement("span");
      item.append(taskLink(task.task_id), ` ${task.model} #${task.attempt} `);
      running.append(item);
    }
    if (!(w.running || []).length) running.textContent = "idle";
    tr.append(
      cell(`${w.id}`), cell((w.queues || []).join(", ")),
      cell(`${w.in_flight} / ${w.concurrency}`), cell(running), cell(ago(w.last_seen)),
    );
    return tr;
  });
  fill($("workers"), rows, 5, "No worker has sent a heartbeat lately.");
}

function renderFailures(status) {
  const rows = status.recent_failures.map((task) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "failure";
    tr.dataset.task = task.task_id;
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.dataset.testid = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => retryTask(task.task_id, retry));
    const error = task.error ? `${task.error.type}: ${task.error.message}` : "";
    tr.append(
      cell(taskLink(task.task_id)), cell(task.model), cell(error, "error"),
      cell(String(task.attempts)), cell(ago(task.finished_at)), cell(retry),
    );
    return tr;
  });
  fill($("failures"), rows, 6, "No failures.");
}

async function retryTask(taskId, button) {
  button.disabled = true;
  try {
    const task = await api(`/v1/tasks/${taskId}/retry`, { method: "POST" });
    button.textContent = `queued again (${task.status})`;
    button.dataset.testid = "retried";
    showError(null);
  } catch (error) {
    button.disabled = false;
    showError(error);
  }
}

// --- a task's timeline --------------------------------------------------------------------------

async function showTimeline(taskId) {
  $("timeline-input").value = taskId;
  history.replaceState(null, "", `#task=${taskId}`);
  const box = $("timeline");
  try {
    const timeline = await api(`/v1/ops/tasks/${encodeURIComponent(taskId)}`);
    const head = document.createElement("div");
    head.className = "head";
    const served = timeline.served_model && timeline.served_model !== timeline.model ? ` (served by ${timeline.served_model})` : "";
    const traceLabel = timeline.trace_linked ? "linked to the batch's trace" : "trace";
    head.textContent = `${timeline.status} · ${timeline.attempts} attempt(s) · ${timeline.model}${served} · ${timeline.provider} · ${traceLabel} `;
    const trace = document.createElement("code");
    trace.dataset.testid = "trace-id";
    trace.textContent = timeline.trace_id || "(not traced)";
    head.append(trace);
    const list = document.createElement("ol");
    const start = Date.parse(timeline.steps[0].at);
    for (const step of timeline.steps) {
      const li = document.createElement("li");
      li.dataset.testid = "timeline-step";
      if (step.what === "failed") li.className = "failed";
      const when = document.createElement("span");
      when.className = "when";
      when.textContent = step.at ? `+${fmt((Date.parse(step.at) - start) / 1000)} s` : "";
      when.title = step.at || "";
      const what = document.createElement("b");
      what.textContent = step.what;
      li.append(when, what);
      if (step.detail) {
        const detail = document.createElement("span");
        detail.className = "detail";
        detail.textContent = step.detail;
        li.append(detail);
      }
      list.append(li);
    }
    box.replaceChildren(head, list);
  } catch (error) {
    if (error instanceof NeedsKey && askForKey()) return showTimeline(taskId);
    box.textContent = String(error.message || error);
  }
}

// --- refreshing ---------------------------------------------------------------------------------

async function refresh() {
  if (state.refreshing || state.paused) return;
  state.refreshing = true;
  try {
    const since = state.lastAt === null ? "" : `?since=${state.lastAt}`;
    const [status, series] = await Promise.all([api("/v1/status"), api(`/v1/ops/series${since}`)]);
    state.now = series.now;
    state.span = series.series_seconds;
    state.samples.push(...series.samples);
    state.samples = state.samples.filter((s) => s.at > series.now - series.series_seconds);
    if (state.samples.length) state.lastAt = state.samples[state.samples.length - 1].at;
    render(status);
    state.updatedAt = Date.now();
    showError(null);
  } catch (error) {
    if (error instanceof NeedsKey) {
      state.paused = !askForKey();
      if (state.paused) showError("This server needs an API key: set one with the “API key” button.");
    } else {
      showError(`Could not refresh: ${error.message || error}`);
    }
  } finally {
    state.refreshing = false;
  }
}

function render(status) {
  state.status = status;
  let finished = 0, failed = 0;
  for (const sample of state.samples) {
    for (const q of Object.values(sample.queues)) { finished += q.finished; failed += q.failed; }
  }
  const last = state.samples[state.samples.length - 1];
  const rate = last ? Object.values(last.queues).reduce((sum, q) => sum + q.finished, 0) / Math.max(last.seconds, 0.001) : null;
  $("finished-total").textContent = String(finished);
  $("failed-total").textContent = String(failed);
  $("finished-rate").textContent = fmt(rate);
  $("depth-total").textContent = String(status.queues.reduce((sum, q) => sum + (q.depth || 0), 0));
  $("workers-total").textContent = String(status.workers.length);
  renderQueues(status);
  renderWorkers(status);
  renderFailures(status);
  drawCharts();
}

function tick() {
  if (state.updatedAt) $("updated").textContent = `updated ${Math.round((Date.now() - state.updatedAt) / 1000)} s ago`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("set-key").addEventListener("click", () => {
    if (askForKey()) { state.paused = false; refresh(); }
  });
  $("timeline-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showTimeline($("timeline-input").value.trim());
  });
  window.addEventListener("resize", () => { if (state.status) drawCharts(); });
  const linked = location.hash.match(/^#task=([0-9a-f]+)$/);
  refresh().then(() => { if (linked) showTimeline(linked[1]); });
  setInterval(refresh, REFRESH_SECONDS * 1000);
  setInterval(tick, 1000);
});
