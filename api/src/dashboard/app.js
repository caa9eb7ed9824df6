// The dashboard's behaviour: refresh each panel from the server, and send the buttons'
// requests to the JSON API (the session cookie authenticates them).
"use strict";

const flash = (text) => { document.getElementById("flash").textContent = text; };

async function refresh(panel) {
  const res = await fetch("/dashboard/panel/" + panel.dataset.panel);
  if (res.status === 401) { location.reload(); return; }
  if (res.ok) panel.innerHTML = await res.text();
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

async function act(what, path, body) {
  try {
    const data = await post(path, body);
    if (data.requeued !== undefined) flash(what + ": re-queued " + data.requeued);
    else if (data.queue !== undefined) flash(what + ": queue " + data.queue + (data.paused ? " paused" : " running"));
    else flash(what + ": job " + data.id);
  } catch (e) {
    flash(what + " failed: " + e.message);
  }
  document.querySelectorAll("[data-panel]").forEach(refresh);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.pause) {
    if (!confirm("Pause queue " + button.dataset.pause + "? Running jobs finish; no new ones start.")) return;
    act("Pause", "/v1/queues/" + encodeURIComponent(button.dataset.pause) + "/pause");
  } else if (button.dataset.resume) {
    act("Resume", "/v1/queues/" + encodeURIComponent(button.dataset.resume) + "/resume");
  } else if (button.dataset.retry) {
    act("Retry", "/v1/jobs/" + button.dataset.retry + "/retry");
  } else if (button.id === "retry-filtered") {
    const kind = document.getElementById("filter-kind").value.trim();
    const error = document.getElementById("filter-error").value.trim();
    const filter = {};
    if (kind) filter.kind = kind;
    if (error) filter.error = error;
    if (!kind && !error && !confirm("Retry every dead job?")) return;
    act("Retry matching", "/v1/jobs/retry", filter);
  } else if (button.id === "sync-full") {
    act("Full sync", "/v1/sync/full", {});
  } else if (button.id === "import-run") {
    act("Import", "/v1/import/run", {});
  }
});

// Panels refresh every 2 s; counting rows and documents for the sync and import panels costs
// more, so every 10 s.
const costly = ["sync", "import"];
let tick = 0;
setInterval(() => {
  tick += 1;
  document.querySelectorAll("[data-panel]").forEach((panel) => {
    if (!costly.includes(panel.dataset.panel) || tick % 5 === 0) refresh(panel);
  });
}, 2000);
