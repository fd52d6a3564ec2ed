// The sluice job page: draws the job's fused stages and fills its metrics and messages
// from the REST API, once a second while the job runs. Plain browser JavaScript, no build.
"use strict";
(function () {
  const root = document.getElementById("job");
  if (!root) return;
  const id = root.dataset.job;
  const api = "/api/v1/jobs/" + encodeURIComponent(id);
  const params = new URLSearchParams(location.search);
  if (params.get("token")) localStorage.setItem("sluice-token", params.get("token"));
  const $ = (x) => document.getElementById(x);
  const TERMINAL = ["JOB_STATE_DONE", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_DRAINED"];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // Numbers as numbers: a dash, never NaN.
  function num(v) {
    const n = Number(v);
    if (v === null || v === undefined || v === "" || !Number.isFinite(n)) return "–";
    if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(2) + " G";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + " M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + " k";
    return Number.isInteger(n) ? String(n) : n.toFixed(1);
  }
  function bytes(v) {
    const n = Number(v);
    if (v === null || v === undefined || !Number.isFinite(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, x = n;
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (i === 0 ? String(x) : x.toFixed(1)) + " " + units[i];
  }
  function seconds(s) {
    if (!Number.isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return num(Math.floor(s / 86400)) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function when(t) {
    const d = t ? new Date(t) : null;
    return d && !isNaN(d) ? d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace("Z", " UTC") : "–";
  }
  function label(state) {
    const w = (state || "").replace("JOB_STATE_", "").toLowerCase();
    return w.charAt(0).toUpperCase() + w.slice(1);
  }
  function table(node, head, rows) {
    node.replaceChildren(el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
  }

  // Elements per second of a stage's root step, as the job last reported it.
  function stageRate(stage, byName) {
    for (const c of stage.componentTransform || []) {
      const t = byName.get(c.userName) || byName.get(c.originalTransform);
      if (t && t.elementsOut !== null && t.elementsOut !== undefined) {
        return Number.isFinite(Number(t.elementsPerSec)) && t.elementsPerSec !== undefined ? Number(t.elementsPerSec) : null;
      }
    }
    return null;
  }

  // Elements per stage: what its root step put out (a read or a shuffle reader).
  function stageElements(stage, byName) {
    for (const c of stage.componentTransform || []) {
      const t = byName.get(c.userName) || byName.get(c.originalTransform);
      if (t && t.elementsOut !== null && t.elementsOut !== undefined) return Number(t.elementsOut);
    }
    return null;
  }

  let rates = new Map();

  function drawGraph(job) {
    const stages = (job.pipelineDescription || {}).executionPipelineStage || [];
    const metrics = job.metrics || {};
    const byId = new Map((metrics.stages || []).map((s) => [s.id, s]));
    const byName = new Map((metrics.transforms || []).map((t) => [t.name, t]));
    const streaming = job.type === "JOB_TYPE_STREAMING";
    // Layers: a stage sits below every stage it waits for.
    const depth = new Map();
    const index = new Map(stages.map((s) => [s.id, s]));
    function layer(s, seen) {
      if (depth.has(s.id)) return depth.get(s.id);
      if (seen.has(s.id)) return 0;
      seen.add(s.id);
      let d = 0;
      for (const p of s.prerequisiteStage || []) if (index.has(p)) d = Math.max(d, layer(index.get(p), seen) + 1);
      depth.set(s.id, d);
      return d;
    }
    stages.forEach((s) => layer(s, new Set()));
    const layers = [];
    stages.forEach((s) => { const d = depth.get(s.id); (layers[d] = layers[d] || []).push(s); });
    const W = 340, GAP_X = 40, GAP_Y = 56, LINE = 16, MAX_STEPS = 6;
    const spilled = (s) => Number(((byId.get(s.id) || {}).memory || {}).spillFiles) > 0;
    const heightOf = (s) => 58 + Math.min((s.componentTransform || []).length, MAX_STEPS + 1) * LINE + (streaming ? 2 * LINE : LINE) + (spilled(s) ? LINE : 0);
    const pos = new Map();
    let y = 10, width = 0;
    for (const row of layers) {
      if (!row) continue;
      let x = 10, h = 0;
      for (const s of row) { const hs = heightOf(s); pos.set(s.id, { x, y, h: hs }); x += W + GAP_X; h = Math.max(h, hs); }
      width = Math.max(width, x);
      y += h + GAP_Y;
    }
    const box = svg("svg", { width: Math.max(width, 320), height: y, class: "plan", role: "img", "aria-label": "execution graph" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
    defs.append(marker);
    box.append(defs);
    for (const s of stages) {
      const to = pos.get(s.id);
      for (const p of s.prerequisiteStage || []) {
        const from = pos.get(p);
        if (!from || !to) continue;
        const x1 = from.x + W / 2, y1 = from.y + from.h, x2 = to.x + W / 2, y2 = to.y;
        const my = (y1 + y2) / 2;
        box.append(svg("path", { d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`, class: "edge", "marker-end": "url(#arrow)" }));
      }
    }
    for (const s of stages) {
      const p = pos.get(s.id), m = byId.get(s.id) || {};
      const g = svg("g", { class: "stage" + ((m.retries || 0) > 0 ? " retried" : ""), transform: `translate(${p.x},${p.y})`, "data-stage": s.id });
      g.append(svg("rect", { width: W, height: p.h, rx: 6 }));
      g.append(svg("text", { x: 10, y: 20, class: "stage-name" }, `${s.id} · ${s.name}`));
      g.append(svg("text", { x: W - 10, y: 20, class: "stage-kind", "text-anchor": "end" }, (s.kind || "").replace(/_KIND$/, "").toLowerCase().replace(/_/g, " ")));
      let ty = 40;
      const steps = s.componentTransform || [];
      for (const c of steps.slice(0, MAX_STEPS)) {
        const name = c.userName.length > 40 ? "…" + c.userName.slice(-39) : c.userName;
        g.append(svg("text", { x: 14, y: ty, class: "step" }, name));
        ty += LINE;
      }
      if (steps.length > MAX_STEPS) { g.append(svg("text", { x: 14, y: ty, class: "step more" }, `+ ${steps.length - MAX_STEPS} more`)); ty += LINE; }
      ty += 6;
      const elements = stageElements(s, byName);
      const rate = rates.get(s.id);
      const bytesMoved = (Number(m.bytesRead) || 0) + (Number(m.shuffleBytesOut) || 0);
      g.append(svg("text", { x: 10, y: ty, class: "numbers" },
        `${num(elements)} el · ${rate === undefined ? "–" : num(rate)}/s · ${bytes(bytesMoved)}`));
      ty += LINE;
      g.append(svg("text", { x: 10, y: ty, class: "numbers" },
        `bundles ${num(m.bundles)} · attempts ${num(m.bundleAttempts)} · retries ${num(m.retries)}`));
      const held = m.memory || {};
      if (Number(held.spillFiles) > 0) {
        ty += LINE;
        g.append(svg("text", { x: 10, y: ty, class: "numbers" },
          `held ${bytes(held.peakBytesHeld)} · spilled ${bytes(held.bytesSpilled)} in ${num(held.spillFiles)} files`));
      }
      if (streaming) {
        ty += LINE;
        g.append(svg("text", { x: 10, y: ty, class: "numbers" },
          `watermark ${m.watermark ? when(m.watermark).slice(11) : "–"} · freshness ${m.dataFreshnessSecs === undefined ? "–" : seconds(m.dataFreshnessSecs)}`));
      }
      box.append(g);
    }
    $("graph").replaceChildren(box);
  }

  function fill(job) {
    const state = job.currentState || "";
    const st = $("state");
    st.textContent = label(state);
    st.className = "state " + state.toLowerCase();
    $("type").textContent = job.type === "JOB_TYPE_STREAMING" ? "Streaming" : "Batch";
    $("start").textContent = when(job.startTime || job.createTime);
    const start = new Date(job.startTime || job.createTime);
    const end = TERMINAL.includes(state) ? new Date(job.currentStateTime) : new Date();
    $("duration").textContent = seconds((end - start) / 1000);
    const metrics = job.metrics || {};
    const stages = (job.pipelineDescription || {}).executionPipelineStage || [];
    const byName = new Map((metrics.transforms || []).map((t) => [t.name, t]));
    const wall = new Map((metrics.stages || []).map((s) => [s.id, Number(s.wallTime) / 1000]));
    // Rates: what the job's process measured between its last two reports; the average
    // once the job has ended.
    rates = new Map();
    for (const s of stages) {
      const c = stageElements(s, byName);
      if (c === null) continue;
      if (TERMINAL.includes(state)) {
        const secs = (end - start) / 1000;
        if (secs > 0) rates.set(s.id, c / secs);
      } else {
        const r = stageRate(s, byName);
        if (r !== null) rates.set(s.id, r);
      }
    }
    let total = 0;
    for (const s of stages) if (rates.has(s.id) && (s.componentTransform || []).length && (s.inputSource || []).length && !(s.prerequisiteStage || []).length) total += rates.get(s.id);
    $("rate").textContent = rates.size ? num(total) : "–";
    const memory = metrics.memory;
    $("memory").textContent = memory && Number(memory.maxMemory) > 0
      ? `peak ${bytes(memory.peakBytesHeld)} of ${bytes(memory.maxMemory)}` +
        (Number(memory.spillFiles) > 0 ? `; spilled ${bytes(memory.bytesSpilled)} in ${num(memory.spillFiles)} files` : "") +
        (Number(memory.overBudget) > 0 ? `; over budget in ${num(memory.overBudget)} grouping(s)` : "")
      : "–";
    const failure = job.failureMessage;
    $("failure").hidden = !failure;
    if (failure) $("failure").replaceChildren(el("strong", {}, "The job failed: "), el("pre", {}, failure));
    const warnings = metrics.warnings || [];
    $("warnings").hidden = !warnings.length;
    $("warnings").replaceChildren(el("strong", {}, "Warnings"), el("ul", {}, ...warnings.map((w) => el("li", {}, w))));
    const active = !TERMINAL.includes(state);
    $("cancel").hidden = !active || state === "JOB_STATE_CANCELLING";
    $("drain").hidden = !active || job.type !== "JOB_TYPE_STREAMING" || state === "JOB_STATE_DRAINING" || state === "JOB_STATE_CANCELLING";
    drawGraph(job);
    table($("stages"), ["Stage", "Name", "Elements", "Elements/s", "Bundles", "Attempts", "Retries", "Failed attempts", "Bytes read", "Shuffle bytes out", "Peak held", "Spilled", "Wall time"].concat(job.type === "JOB_TYPE_STREAMING" ? ["Watermark", "Freshness"] : []),
      (metrics.stages || []).map((m) => {
        const s = stages.find((x) => x.id === m.id);
        const row = [m.id, m.name, num(s ? stageElements(s, byName) : null), rates.has(m.id) ? num(rates.get(m.id)) : "–", num(m.bundles), num(m.bundleAttempts), num(m.retries), num(m.failedAttempts), bytes(m.bytesRead), bytes(m.shuffleBytesOut), bytes((m.memory || {}).peakBytesHeld), bytes((m.memory || {}).bytesSpilled), seconds(wall.get(m.id))];
        if (job.type === "JOB_TYPE_STREAMING") row.push(m.watermark ? when(m.watermark) : "–", m.dataFreshnessSecs === undefined ? "–" : seconds(m.dataFreshnessSecs));
        return row;
      }));
    table($("transforms"), ["Transform", "Kind", "Elements in", "Elements out", "Bytes in", "Bytes out", "Attempts", "Retries", "Dead letters", "Late dropped"],
      (metrics.transforms || []).map((t) => [t.name, (t.kind || "").toLowerCase(), num(t.elementsIn), num(t.elementsOut), bytes(t.bytesIn), bytes(t.bytesOut), num(t.bundleAttempts), num(t.retries), num(t.deadLettered), num(t.droppedDueToLateness)]));
    const user = metrics.user || [];
    $("user-metrics").hidden = !user.length;
    table($("user"), ["Transform", "Metric", "Value"], user.map((u) => {
      const { transform, name, ...rest } = u;
      const value = rest.value !== undefined ? num(rest.value) : JSON.stringify(rest);
      return [transform, name, value];
    }));
  }

  // Messages: oldest first, a page at a time, then whatever arrives while following.
  const IMPORTANCE = [["JOB_MESSAGE_DETAILED", "All"], ["JOB_MESSAGE_BASIC", "Info"], ["JOB_MESSAGE_WARNING", "Warnings"], ["JOB_MESSAGE_ERROR", "Errors"]];
  let minimum = "JOB_MESSAGE_BASIC", follow = "0", next = null, shown = 0;
  const MAX_SHOWN = 1000;
  function importanceButtons() {
    $("importance").replaceChildren(...IMPORTANCE.map(([value, text]) => {
      const a = el("a", { href: "#", class: value === minimum ? "on" : "" }, text);
      a.onclick = (e) => { e.preventDefault(); minimum = value; follow = "0"; next = null; shown = 0; $("messages").replaceChildren(); importanceButtons(); loadMessages(); };
      return a;
    }));
  }
  async function loadMessages(more) {
    const token = more ? next : follow;
    const r = await fetch(`${api}/messages?minimumImportance=${minimum}&pageSize=200&pageToken=${token || 0}`);
    if (!r.ok) return;
    const page = await r.json();
    const rows = (page.jobMessages || []).map((m) => el("tr", { class: (m.messageImportance || "").toLowerCase() },
      el("td", { class: "time" }, when(m.time)), el("td", {}, (m.messageImportance || "").replace("JOB_MESSAGE_", "").toLowerCase()), el("td", {}, el("pre", {}, m.messageText || ""))));
    if (shown < MAX_SHOWN) { $("messages").append(...rows); shown += rows.length; }
    next = page.nextPageToken || null;
    if (!next) follow = page.followToken || follow;
    $("more-messages").hidden = !next;
  }
  $("more-messages").onclick = () => loadMessages(true);

  async function request(requested, verb) {
    let token = localStorage.getItem("sluice-token");
    if (!token) {
      token = prompt(`${verb} needs the service's token (the "token" file in its data directory, or the link sluice serve printed):`);
      if (!token) return;
      localStorage.setItem("sluice-token", token.trim());
    }
    if (!confirm(`${verb} job ${id}?`)) return;
    const r = await fetch(api, { method: "PUT", headers: { "Content-Type": "application/json", Authorization: "Bearer " + token.trim() }, body: JSON.stringify({ requestedState: requested }) });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      if (r.status === 401) localStorage.removeItem("sluice-token");
      alert(`${verb} failed: ${(body.error || {}).message || r.status}`);
    }
    refresh();
  }
  $("cancel").onclick = () => request("JOB_STATE_CANCELLED", "Cancel");
  $("drain").onclick = () => request("JOB_STATE_DRAINED", "Drain");

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const r = await fetch(api + "?view=all");
      if (r.ok) {
        const job = await r.json();
        fill(job);
        if (!next) await loadMessages(false);
        if (TERMINAL.includes(job.currentState)) { root.dataset.loaded = "final"; return; }
        root.dataset.loaded = "live";
      }
    } catch (e) { /* the service may be restarting: try again */ }
    timer = setTimeout(refresh, 1000);
  }
  importanceButtons();
  refresh();
})();
