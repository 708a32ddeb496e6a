// The operator's page: polls the latest frame (one request at a time, so a slow browser simply
// sees fewer frames), the status every second and the gallery every two seconds.
"use strict";

const $ = (id) => document.getElementById(id);
const tokenInput = $("token");
tokenInput.value = localStorage.getItem("edgefreq-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("edgefreq-token", tokenInput.value));

function headers(extra = {}) {
  const token = tokenInput.value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fmt = (ms) => (ms === null || ms === undefined ? "–" : `${ms.toFixed(1)} ms`);

async function liveLoop() {
  const img = $("live");
  let etag = null;
  let url = null;
  for (;;) {
    try {
      const response = await fetch("/api/frame.jpg", { headers: headers(etag ? { "If-None-Match": etag } : {}), cache: "no-store" });
      if (response.status === 200) {
        etag = response.headers.get("ETag");
        const blob = await response.blob();
        const next = URL.createObjectURL(blob);
        await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = next; });
        if (url) URL.revokeObjectURL(url);
        url = next;
        img.dataset.frameId = response.headers.get("X-Frame-Id");
        const verdict = response.headers.get("X-Verdict");
        $("verdict").textContent = `${verdict} · frame ${img.dataset.frameId}`;
        $("verdict").className = `verdict ${verdict}`;
      }
    } catch (err) { /* server restarting: keep trying */ }
    await sleep(150);
  }
}

function renderStatus(s) {
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : "not ready";
  ready.className = `badge ${s.ready ? "ready" : "not-ready"}`;
  $("why").textContent = s.not_ready.join("; ");
  $("engine").textContent = s.engine ? `engine ${s.engine} (${s.device})` : "engine loading";
  $("threshold").textContent = s.threshold !== null ? `threshold ${s.threshold.toPrecision(5)} (${s.threshold_source})` : "";
  $("source").textContent = s.source ? `source ${s.source}` : "";
  for (const key of ["ok", "nok", "not_inspected", "dropped", "frames"]) $(key).textContent = s[key];
  $("yield").textContent = s.yield === null ? "–" : `${(100 * s.yield).toFixed(1)} %`;
  $("latency").textContent = `${fmt(s.latency_ms.total.p50)} / ${fmt(s.latency_ms.total.p99)}`;
  $("infer").textContent = `${fmt(s.latency_ms.infer.p50)} / ${fmt(s.latency_ms.infer.p99)}`;
  const rows = Object.entries(s.sinks).map(([name, k]) =>
    `<tr><th>sink ${escape(name)}</th><td>${k.sent} sent, ${k.failed} failed, ${k.dropped} dropped${k.failing ? " (failing)" : ""}</td></tr>`);
  $("sinks").innerHTML = rows.join("");
  const fb = s.feedback;
  $("feedback-state").textContent = !fb.folder ? "(feedback off: start with --feedback DIR)"
    : !fb.token_set ? "(feedback off: EDGEFREQ_HTTP_TOKEN not set)" : `(feedback into ${fb.folder})`;
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function statusLoop() {
  for (;;) {
    try {
      const response = await fetch("/api/status", { headers: headers(), cache: "no-store" });
      if (response.ok) renderStatus(await response.json());
    } catch (err) { /* keep trying */ }
    await sleep(1000);
  }
}

const cards = new Map(); // part id (the decision's number) -> card element

function card(part) {
  const d = part.record;
  const el = document.createElement("div");
  el.className = "part";
  el.dataset.partId = part.id;
  el.dataset.frameId = d.frame_id === null ? "none" : d.frame_id;
  const when = new Date(d.capture_ts * 1000).toLocaleTimeString();
  const score = d.score_norm === null ? "not inspected" : `score ${d.score_norm.toFixed(2)} × threshold`;
  el.innerHTML = `<img alt="NOK part ${part.id}">
    <div>frame ${d.frame_id === null ? "none" : d.frame_id}${d.part_id ? ` · part ${escape(d.part_id)}` : ""} · ${when}</div><div>${score}</div>
    <div class="meta">${escape(d.source)}</div>
    <div class="buttons">
      <button class="good">good part (false reject)</button>
      <button class="defect">confirmed defect</button>
      <input class="label" value="defect" title="defect label (the test/ folder it goes to)">
    </div><div class="result"></div>`;
  if (!part.has_image) for (const b of el.querySelectorAll("button")) { b.disabled = true; b.title = "no image to file"; }
  el.querySelector(".good").addEventListener("click", () => sendFeedback(el, part.id, "good"));
  el.querySelector(".defect").addEventListener("click", () => sendFeedback(el, part.id, "defect"));
  fetch(`/api/gallery/${part.id}.jpg`, { headers: headers() }).then(async (r) => {
    if (r.ok) el.querySelector("img").src = URL.createObjectURL(await r.blob());
  }).catch(() => {});
  return el;
}

async function sendFeedback(el, id, kind) {
  const result = el.querySelector(".result");
  const label = el.querySelector(".label").value;
  try {
    const response = await fetch("/api/feedback", {
      method: "POST", headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ id, kind, label }),
    });
    const body = await response.json();
    result.className = response.ok ? "result filed" : "result error";
    result.textContent = response.ok ? `filed: ${body.path}` : body.error;
  } catch (err) {
    result.className = "result error";
    result.textContent = `not filed: ${err}`;
  }
}

async function galleryLoop() {
  const box = $("gallery");
  for (;;) {
    try {
      const response = await fetch("/api/gallery", { headers: headers(), cache: "no-store" });
      if (response.ok) {
        const { parts } = await response.json();
        const keep = new Set(parts.map((p) => p.id));
        for (const [id, el] of cards) if (!keep.has(id)) { el.remove(); cards.delete(id); }
        let previous = null;
        for (const part of parts) {  // newest first
          let el = cards.get(part.id);
          if (!el) { el = card(part); cards.set(part.id, el); }
          if (previous === null ? box.firstChild !== el : previous.nextSibling !== el) {
            if (previous === null) box.prepend(el); else previous.after(el);
          }
          previous = el;
        }
      }
    } catch (err) { /* keep trying */ }
    await sleep(2000);
  }
}

liveLoop();
statusLoop();
galleryLoop();
