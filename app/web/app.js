// wanserve web page: plain JS, no build step.
// Talks to the same /v1 API as the SDK and CLI. The API key (if the server has auth on) is typed once
// and kept in localStorage; the event stream is read with fetch() so the Authorization header can be
// sent (EventSource cannot send headers).
"use strict";

const KEY_STORAGE = "wanserve.apiKey";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const $ = (sel) => document.querySelector(sel);

const state = {
  models: [],
  current: null,      // id of the job shown in the "current" panel
  watch: null,        // AbortController of the running event-stream reader
  blobUrls: [],
  historyAfter: null,
  queueTimer: null,   // interval refreshing the queue position while queued
};

// ------------------------------------------------------------------ HTTP helpers
function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

function authHeaders(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function problemMessage(resp) {
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!body || typeof body !== "object") return `HTTP ${resp.status} ${resp.statusText}`;
  if (body.error && typeof body.error === "object") body = { ...body, ...body.error };
  let msg = body.title || body.code || `HTTP ${resp.status}`;
  if (body.detail || body.message) msg += ": " + (body.detail || body.message);
  for (const e of body.errors || []) msg += `\n  ${e.field || e.loc || "?"}: ${e.reason || e.msg || ""}`;
  return msg;
}

async function api(path, opts = {}) {
  const resp = await fetch(path, { ...opts, headers: authHeaders(opts.headers || {}) });
  if (resp.status === 401 || resp.status === 403) {
    $("#auth-box").open = true;
  }
  if (!resp.ok) throw new Error(await problemMessage(resp));
  const type = resp.headers.get("content-type") || "";
  return type.includes("json") ? resp.json() : resp;
}

// ------------------------------------------------------------------ models and the form
function sizeText(s) { return Array.isArray(s) ? `${s[0]}x${s[1]}` : String(s); }

async function loadModels() {
  try {
    const body = await api("/v1/models");
    state.models = body.data || [];
    $("#server-state").textContent = state.models.length
      ? `${state.models.length} model(s) served` : "no workers online";
  } catch (err) {
    $("#server-state").textContent = "cannot load models: " + err.message;
    state.models = [];
  }
  const sel = $("#model");
  const previous = sel.value;
  sel.innerHTML = "";
  for (const m of state.models) {
    const opt = document.createElement("option");
    opt.value = m.id;
    opt.textContent = m.id;
    sel.appendChild(opt);
  }
  if (previous && state.models.some((m) => m.id === previous)) sel.value = previous;
  applyModel();
  loadLoras();
}

// LoRAs that fit the chosen model; broken files are listed by the server with `error`
async function loadLoras() {
  const sel = $("#lora");
  const previous = sel.value;
  let loras = [];
  try { loras = (await api("/v1/loras")).data || []; } catch (err) { loras = []; }
  const model = $("#model").value;
  sel.innerHTML = '<option value="">none</option>';
  for (const l of loras) {
    if (l.error || (l.models && !l.models.includes(model))) continue;
    const opt = document.createElement("option");
    opt.value = l.id;
    opt.textContent = l.defaults && l.defaults.num_inference_steps
      ? `${l.id} (${l.defaults.num_inference_steps} steps)` : l.id;
    sel.appendChild(opt);
  }
  if ([...sel.options].some((o) => o.value === previous)) sel.value = previous;
}

function showExamples(m) {
  // the served model's own example prompts (`/v1/models`), so the page never suggests what it cannot draw
  const box = $("#examples");
  box.innerHTML = "";
  const examples = (m && m.example_prompts) || [];
  $("#prompt").placeholder = examples[0] || "Describe the video";
  for (const text of examples) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "example";
    b.textContent = text;
    b.addEventListener("click", () => { $("#prompt").value = text; });
    box.appendChild(b);
  }
}

function applyModel() {
  const m = state.models.find((x) => x.id === $("#model").value);
  showExamples(m);
  const sizeSel = $("#size");
  sizeSel.innerHTML = "";
  const samplerSel = $("#sampler");
  samplerSel.innerHTML = "";
  if (!m) return;
  const def = sizeText(m.default_size || "");
  for (const s of m.sizes || [def]) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = sizeText(s);
    if (opt.value === def) opt.selected = true;
    sizeSel.appendChild(opt);
  }
  const fps = m.fps;
  const frames = m.num_frames || {};
  const steps = m.num_inference_steps || {};
  const setNum = (id, placeholder, min, max) => {
    const el = document.getElementById(id);
    el.placeholder = placeholder ?? "";
    if (min !== undefined) el.min = min ?? "";
    if (max !== undefined) el.max = max ?? "";
  };
  setNum("num_frames", frames.default, frames.min, frames.max);
  setNum("fps", fps);
  $("#seconds").placeholder = frames.default && fps ? `${(frames.default / fps).toFixed(2)}` : "default";
  setNum("num_inference_steps", steps.default, 1, steps.max);
  const g = m.default_guidance_scale || {};
  const twoExperts = g.high_noise !== undefined || g.low_noise !== undefined;
  setNum("guidance_scale", twoExperts ? `${g.high_noise} / ${g.low_noise}` : g.all);
  setNum("guidance_scale_high_noise", g.high_noise);
  setNum("guidance_scale_low_noise", g.low_noise);
  for (const el of document.querySelectorAll(".two-experts")) el.hidden = !twoExperts;
  setNum("shift", m.default_shift);
  const blank = document.createElement("option");
  blank.value = ""; blank.textContent = `default (${m.default_sampler || "unipc"})`;
  samplerSel.appendChild(blank);
  for (const s of m.samplers || ["unipc", "dpm++", "euler"]) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = s;
    samplerSel.appendChild(opt);
  }
  const cacheSel = $("#cache_type");
  cacheSel.innerHTML = '<option value="">off</option>';
  for (const [type, thr] of Object.entries(m.cache_types || {})) {
    const opt = document.createElement("option");
    opt.value = type; opt.textContent = `${type} (default ${thr})`;
    cacheSel.appendChild(opt);
  }
  const imageInput = m.image_input || "optional";
  $("#image").disabled = imageInput === "none";
  $("#image").required = imageInput === "required";
  $("#image-hint").textContent = imageInput === "required" ? "(required)"
    : imageInput === "none" ? "(not used by this model)" : "(optional)";
}

function collectFields() {
  const fields = { prompt: $("#prompt").value.trim() };
  for (const name of ["model", "size", "seconds", "seed", "num_frames", "fps", "num_inference_steps",
    "guidance_scale", "guidance_scale_high_noise", "guidance_scale_low_noise", "shift", "sampler",
    "negative_prompt", "priority", "cancel_after"]) {
    const el = document.getElementById(name);
    if (el.closest("[hidden]")) continue;
    const v = el.value.trim();
    if (v === "") continue;
    fields[name] = el.type === "number" && name !== "seconds" ? Number(v) : v;
  }
  const lora = $("#lora").value;
  if (lora) fields.loras = [{ name: lora, scale: Number($("#lora_scale").value || 1) }];
  const cacheType = $("#cache_type").value;
  if (cacheType) {
    fields.cache = { type: cacheType };
    const thr = $("#cache_threshold").value.trim();
    if (thr !== "") fields.cache.threshold = Number(thr);
  }
  return fields;
}

async function submit(ev) {
  ev.preventDefault();
  const errBox = $("#form-error");
  errBox.hidden = true;
  $("#submit").disabled = true;
  try {
    const fields = collectFields();
    const file = $("#image").files[0];
    let opts;
    if (file && !$("#image").disabled) {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) {
        form.append(k, typeof v === "object" ? JSON.stringify(v) : String(v));
      }
      form.append("input_reference", file, file.name);
      opts = { method: "POST", body: form };
    } else {
      opts = { method: "POST", body: JSON.stringify(fields), headers: { "Content-Type": "application/json" } };
    }
    const job = await api("/v1/videos", opts);
    showJob(job);
    loadHistory(true);
  } catch (err) {
    errBox.textContent = err.message;
    errBox.hidden = false;
  } finally {
    $("#submit").disabled = false;
  }
}

// ------------------------------------------------------------------ the current job
function releaseBlobs() {
  for (const u of state.blobUrls) URL.revokeObjectURL(u);
  state.blobUrls = [];
}

function renderProgress(job) {
  const status = job.status || "queued";
  let pct = Number(job.progress || 0);
  if (status === "completed") pct = 100;
  const bar = $("#progress");
  bar.value = pct;
  bar.dataset.status = status;
  bar.setAttribute("aria-valuenow", String(pct));
  const badge = $("#current-status");
  badge.textContent = status;
  badge.className = "badge " + status;
  let text = `${pct}%`;
  if (status === "queued") {
    text = job.queue_position != null ? `queued, position ${job.queue_position}` : "queued";
  } else if (status === "in_progress") {
    text = job.step != null && job.total_steps ? `step ${job.step}/${job.total_steps} · ${pct}%` : `starting · ${pct}%`;
  } else if (status === "completed") {
    text = "done";
  }
  $("#progress-text").textContent = text;
  $("#current-cancel").hidden = TERMINAL.has(status);
  const errBox = $("#current-error");
  if (status === "failed" && job.error) {
    errBox.textContent = `${job.error.code || "error"}: ${job.error.message || ""}`;
    errBox.hidden = false;
  } else {
    errBox.hidden = true;
  }
}

// Events announce state changes only; while queued, refresh the queue position now and then.
function watchQueuePosition(id) {
  clearInterval(state.queueTimer);
  state.queueTimer = setInterval(async () => {
    if (state.current !== id || $("#progress").dataset.status !== "queued") {
      clearInterval(state.queueTimer);
      return;
    }
    try {
      const job = await api(`/v1/videos/${id}`);
      if (state.current === id && job.status === "queued" && $("#progress").dataset.status === "queued") {
        renderProgress(job);
      }
    } catch (_) { /* the stream reports real failures */ }
  }, 1500);
}

// Live preview: a few frames of the predicted video side by side (one WebP data URL per
// `video.preview` event), replaced by the player once the video is done.
function showPreview(ev) {
  let data;
  try { data = JSON.parse(ev.data.join("\n")); } catch (_) { return; }
  if (!data || typeof data.image !== "string" || !data.image.startsWith("data:image/")) return;
  $("#preview").src = data.image;
  $("#preview-caption").textContent = `preview at step ${data.step}/${data.total_steps}`;
  $("#preview-box").hidden = false;
}

function clearPreview() {
  $("#preview-box").hidden = true;
  $("#preview").removeAttribute("src");
}

function showJob(job) {
  if (state.watch) state.watch.abort();
  releaseBlobs();
  state.current = job.id;
  $("#current").hidden = false;
  $("#current-id").textContent = job.id;
  $("#result").hidden = true;
  clearPreview();
  $("#player").removeAttribute("src");
  renderProgress(job);
  if (TERMINAL.has(job.status)) {
    finish(job.id);
  } else {
    const ctl = new AbortController();
    state.watch = ctl;
    watchQueuePosition(job.id);
    watchEvents(job, ctl.signal).catch((err) => {
      if (!ctl.signal.aborted) $("#progress-text").textContent = "stream error: " + err.message;
    });
  }
}

function parseEventBlock(block) {
  const ev = { event: "message", data: [], id: null };
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") ev.event = value;
    else if (field === "data") ev.data.push(value);
    else if (field === "id") ev.id = value;
  }
  return ev;
}

function mergeEvent(job, ev) {
  let data = {};
  try { data = JSON.parse(ev.data.join("\n")); } catch (_) { return job; }
  if (data && typeof data.data === "object" && data.data) data = { ...data, ...data.data };
  const merged = { ...job };
  for (const [k, v] of Object.entries(data || {})) if (k !== "type" && k !== "data") merged[k] = v;
  const tail = ev.event.split(".").pop();
  if (data.status === undefined && (TERMINAL.has(tail) || tail === "queued" || tail === "in_progress")) {
    merged.status = tail;
  }
  return merged;
}

// Read the SSE stream with fetch so the Authorization header goes along; reconnect with
// Last-Event-ID when the stream drops; poll when the server has no stream.
async function watchEvents(job, signal) {
  let lastId = null;
  let failures = 0;
  while (!signal.aborted && !TERMINAL.has(job.status)) {
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      const resp = await fetch(`/v1/videos/${job.id}/events`, { headers, signal });
      if (!resp.ok || !resp.body) throw new Error(await problemMessage(resp));
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
          const ev = parseEventBlock(block);
          if (ev.id) lastId = ev.id;
          if (!ev.data.length) continue;
          if (ev.event === "video.preview") { showPreview(ev); continue; }
          job = mergeEvent(job, ev);
          renderProgress(job);
        }
        if (TERMINAL.has(job.status)) { reader.cancel().catch(() => {}); break; }
      }
      failures = 0;
    } catch (err) {
      if (signal.aborted) return;
      failures += 1;
      if (failures > 3) {           // give up on streaming; poll the record instead
        await pollUntilDone(job.id, signal);
        return;
      }
      await new Promise((r) => setTimeout(r, 500 * failures));
    }
    if (!TERMINAL.has(job.status)) {
      try { job = await api(`/v1/videos/${job.id}`); renderProgress(job); } catch (_) { /* retry */ }
    }
  }
  if (!signal.aborted) finish(job.id);
}

async function pollUntilDone(id, signal) {
  while (!signal.aborted) {
    const resp = await fetch(`/v1/videos/${id}`, { headers: authHeaders(), signal });
    if (!resp.ok) throw new Error(await problemMessage(resp));
    const job = await resp.json();
    renderProgress(job);
    if (TERMINAL.has(job.status)) { finish(id); return; }
    const after = Number(resp.headers.get("openai-poll-after-ms") || 1000);
    await new Promise((r) => setTimeout(r, after));
  }
}

async function assetUrl(job, variant) {
  const urls = job.urls || {};
  const signed = urls[variant] || urls[variant + "_url"] || (variant === "video" ? job.url : null);
  if (signed) return signed;
  // No signed URL: fetch with the key and hand the element a blob: URL.
  const resp = await api(`/v1/videos/${job.id}/content?variant=${variant}`);
  const url = URL.createObjectURL(await resp.blob());
  state.blobUrls.push(url);
  return url;
}

async function finish(id) {
  let job;
  try { job = await api(`/v1/videos/${id}`); } catch (err) {
    $("#progress-text").textContent = err.message; return;
  }
  if (state.current !== id) return;
  renderProgress(job);
  loadHistory(true);
  if (job.status !== "completed") { clearPreview(); return; }
  const video = await assetUrl(job, "video");
  const player = $("#player");
  player.src = video;
  $("#download-video").href = video;
  $("#download-video").setAttribute("download", `${job.id}.mp4`);
  try {
    const thumb = await assetUrl(job, "thumbnail");
    $("#download-thumb").href = thumb;
    player.poster = thumb;
    $("#download-thumb").hidden = false;
  } catch (_) {
    $("#download-thumb").hidden = true;
  }
  const secs = Number(job.seconds);
  const parts = [job.size, secs ? `${secs.toFixed(2)} s` : null, job.seed != null ? `seed ${job.seed}` : null];
  $("#result-meta").textContent = parts.filter(Boolean).join(" · ");
  clearPreview();
  $("#result").hidden = false;
}

async function cancelJob(id) {
  try {
    const job = await api(`/v1/videos/${id}/cancel`, { method: "POST" });
    if (id === state.current) renderProgress(job);
  } catch (err) {
    alert(err.message);
  }
  loadHistory(true);
}

async function deleteJob(id) {
  if (!confirm(`Delete ${id} and its files?`)) return;
  try {
    await api(`/v1/videos/${id}`, { method: "DELETE" });
    if (id === state.current) {
      if (state.watch) state.watch.abort();
      $("#current").hidden = true;
      state.current = null;
    }
  } catch (err) {
    alert(err.message);
  }
  loadHistory(true);
}

// ------------------------------------------------------------------ history
function fmtTime(ts) {
  if (!ts) return "";
  return new Date(ts * 1000).toLocaleString();
}

async function loadHistory(reset) {
  if (reset) state.historyAfter = null;
  const params = new URLSearchParams({ limit: "20" });
  if (state.historyAfter) params.set("after", state.historyAfter);
  let page;
  try { page = await api(`/v1/videos?${params}`); } catch (_) { return; }
  const tbody = $("#history tbody");
  if (reset) tbody.innerHTML = "";
  for (const job of page.data || []) {
    const tr = document.createElement("tr");
    tr.dataset.id = job.id;
    const cells = [fmtTime(job.created_at), job.prompt || "", job.model || ""];
    for (const [i, text] of cells.entries()) {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 1) { td.className = "prompt"; td.title = text; }
      tr.appendChild(td);
    }
    const st = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "badge " + job.status;
    badge.textContent = job.status === "in_progress" ? `running ${job.progress || 0}%` : job.status;
    st.appendChild(badge);
    tr.appendChild(st);
    const actions = document.createElement("td");
    const mk = (label, fn) => {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = label; b.addEventListener("click", fn);
      actions.appendChild(b);
    };
    mk("view", () => showJob(job));
    if (!TERMINAL.has(job.status)) mk("cancel", () => cancelJob(job.id));
    mk("delete", () => deleteJob(job.id));
    tr.appendChild(actions);
    tbody.appendChild(tr);
  }
  state.historyAfter = page.has_more ? (page.last_id || (page.data.at(-1) || {}).id) : null;
  $("#history-more").hidden = !state.historyAfter;
}

// ------------------------------------------------------------------ start
function init() {
  $("#api-key").value = apiKey();
  $("#auth-box").open = false;
  $("#auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
    loadModels(); loadHistory(true);
  });
  $("#api-key-clear").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE); $("#api-key").value = "";
  });
  $("#model").addEventListener("change", () => { applyModel(); loadLoras(); });
  $("#create-form").addEventListener("submit", submit);
  $("#current-cancel").addEventListener("click", () => state.current && cancelJob(state.current));
  $("#history-refresh").addEventListener("click", () => loadHistory(true));
  $("#history-more").addEventListener("click", () => loadHistory(false));
  loadModels();
  loadHistory(true);
  setInterval(() => { if (!document.hidden) loadHistory(true); }, 10000);
}

document.addEventListener("DOMContentLoaded", init);
