"use strict";
// The dashboard's tables and actions; polls the admin API every 2 s (charts: charts.js).
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("tidings-token") || "";
tokenInput.addEventListener("change", () => { sessionStorage.setItem("tidings-token", tokenInput.value); refresh(); });

function say(msg, isError) {
  const s = document.getElementById("status");
  s.textContent = msg;
  s.className = isError ? "error" : "";
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (tokenInput.value) opts.headers["Authorization"] = "Bearer " + tokenInput.value;
  const r = await fetch(base + path, opts);
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { body = text; }
  if (r.status === 401) throw new Error("this server needs a bearer token: enter it at the top right");
  if (!r.ok) throw new Error((body && body.detail) || (r.status + " " + r.statusText));
  return body;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return seconds.toFixed(1) + "s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + "m";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + "h";
  return (seconds / 86400).toFixed(1) + "d";
}

function filterParams() {
  const p = new URLSearchParams();
  for (const el of document.getElementById("filters").elements) {
    if (el.name && el.value.trim()) p.set(el.name, el.value.trim());
  }
  return p;
}

async function loadQueues() {
  const qs = await api("queues");
  const body = document.querySelector("#queues tbody");
  body.replaceChildren();
  for (const q of qs) {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.queue;
    if (q.error_depth > 0) tr.className = "bad";
    cell(tr, q.queue);
    cell(tr, q.ready, "num ready");
    cell(tr, q.in_flight, "num");
    cell(tr, q.scheduled, "num");
    cell(tr, age(q.oldest_age_seconds), "num");
    cell(tr, q.error_depth, "num err");
    cell(tr, q.parked_keys, "num");
    body.appendChild(tr);
  }
}

function perSecond(v) { return v === null || v === undefined ? "-" : fmtNumber(v); }

async function loadEndpoints() {
  const e = await api("endpoints");
  const note = document.getElementById("endpoints-note");
  const parts = ["Rates per second over the last " + Math.round(e.covered_seconds) + " s, as this process handled them" +
    "; handler latency and critical time (sent → handled) are means."];
  if (!e.rates) parts.push("No message journal is installed: rates are not counted.");
  if (!e.latency) parts.push("No Prometheus handle: handler latency is not measured.");
  if (e.stats_error) parts.push("Queue stats failed: " + e.stats_error);
  note.textContent = parts.join(" ");
  const body = document.querySelector("#endpoints tbody");
  body.replaceChildren();
  for (const r of e.endpoints) {
    const tr = document.createElement("tr");
    tr.dataset.endpoint = r.endpoint;
    if (r.error_depth > 0 || r.failed_per_second > 0) tr.className = "bad";
    cell(tr, r.endpoint);
    cell(tr, perSecond(r.received_per_second), "num received");
    cell(tr, perSecond(r.handled_per_second), "num handled");
    cell(tr, perSecond(r.failed_per_second), r.failed_per_second > 0 ? "num failed err" : "num failed");
    cell(tr, perSecond(r.retried_per_second), "num retried");
    cell(tr, perSecond(r.handler_ms), "num latency");
    cell(tr, perSecond(r.critical_ms), "num critical");
    cell(tr, r.ready, "num ready");
    cell(tr, (r.in_flight === null || r.in_flight === undefined ? "-" : r.in_flight) +
      (r.in_flight_peak === null || r.in_flight_peak === undefined ? "" : " (" + r.in_flight_peak + ")"), "num");
    cell(tr, age(r.oldest_age_seconds), "num");
    cell(tr, r.error_depth, "num err");
    body.appendChild(tr);
  }
}

async function loadGroups() {
  const g = await api("dlq/groups?" + filterParams());
  const body = document.querySelector("#groups tbody");
  body.replaceChildren();
  if (!g.groups.length) {
    const tr = document.createElement("tr");
    cell(tr, "no dead letters match", "muted").colSpan = 7;
    body.appendChild(tr);
  }
  for (const x of g.groups) {
    const tr = document.createElement("tr");
    tr.dataset.group = x.group;
    cell(tr, x.count, "num count");
    cell(tr, x.message_type);
    cell(tr, x.reason);
    const err = cell(tr, x.error, "error-text");
    err.title = x.example_error;
    cell(tr, Object.entries(x.endpoints).map(([k, v]) => k + " (" + v + ")").join(", "));
    cell(tr, new Date(x.last).toLocaleString());
    const b = document.createElement("button");
    b.textContent = "replay " + x.count; b.className = "replay-group"; b.dataset.group = x.group;
    b.addEventListener("click", () => {
      if (confirm("Replay the " + x.count + " dead letter(s) of this group?")) replay({ group: x.group });
    });
    cell(tr, "").appendChild(b);
    body.appendChild(tr);
  }
  if (g.truncated) say("only the first " + g.counted + " dead letters were grouped", false);
}

async function loadSummary() {
  const s = await api("dlq/summary?" + filterParams());
  const box = document.getElementById("summary");
  box.replaceChildren();
  const reasons = Object.entries(s.by_reason);
  if (!reasons.length) { const m = document.createElement("span"); m.className = "muted"; m.textContent = "none"; box.appendChild(m); return; }
  for (const [reason, n] of reasons) {
    const chip = document.createElement("span");
    chip.textContent = reason + ": " + n;
    box.appendChild(chip);
  }
}

function dlqRow(d, withActions) {
  const tr = document.createElement("tr");
  tr.dataset.id = d.id;
  cell(tr, new Date(d.dead_lettered_at).toLocaleString());
  cell(tr, d.endpoint);
  cell(tr, d.message_type + " v" + d.version);
  cell(tr, d.reason);
  cell(tr, d.error ? d.error.slice(0, 120) : null);
  cell(tr, d.attempts, "num");
  cell(tr, d.correlation_id);
  const actions = cell(tr, "");
  const button = (label, cls, fn) => {
    const b = document.createElement("button");
    b.textContent = label; b.className = cls; b.dataset.id = d.id;
    b.addEventListener("click", fn);
    actions.appendChild(b);
  };
  button("show", "show", () => show(d.id));
  if (withActions) {
    button("replay", "replay", () => replay({ ids: [d.id] }));
    button("purge", "purge", () => purge("ids=" + encodeURIComponent(d.id)));
  }
  return tr;
}

async function loadDlq() {
  const list = await api("dlq?" + filterParams());
  const body = document.querySelector("#dlq tbody");
  body.replaceChildren();
  if (!list.length) {
    const tr = document.createElement("tr");
    cell(tr, "no dead letters match", "muted").colSpan = 8;
    body.appendChild(tr);
  }
  for (const d of list) body.appendChild(dlqRow(d, true));
}

async function show(id) {
  try {
    const d = await api("dlq/" + encodeURIComponent(id));
    const pre = document.getElementById("detail");
    pre.hidden = false;
    pre.textContent = "id: " + d.id + "\nendpoint: " + d.endpoint + "\ntype: " + d.message_type + " v" + d.version +
      "\nreason: " + d.reason + "\nerror: " + d.error + "\n\nheaders:\n" +
      Object.entries(d.headers).map(([k, v]) => "  " + k + ": " + v).join("\n") +
      "\n\nbody:\n" + JSON.stringify(d.body, null, 2);
  } catch (e) { say(e.message, true); }
}

async function replay(request) {
  try {
    const r = await api("dlq/replay", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
    say("replayed " + r.replayed + " message(s)");
  } catch (e) { say("replay failed: " + e.message, true); }
  await refresh();
}

async function purge(query) {
  if (!confirm("Delete the selected dead letters for good?")) return;
  try {
    const r = await api("dlq?" + query + "&confirm=true", { method: "DELETE", headers: { "Content-Type": "application/json" } });
    say("purged " + r.purged + " message(s)");
  } catch (e) { say("purge failed: " + e.message, true); }
  await refresh();
}

document.getElementById("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
// Whether a filter narrows the selection (a limit alone does not): without one, the
// server wants the request to say `all`.
function narrowed(p) { return [...p.keys()].some(k => k !== "limit"); }
document.getElementById("replay-all").addEventListener("click", () => {
  const p = filterParams(); const req = {};
  for (const [k, v] of p) req[k] = k === "limit" ? Number(v) : v;
  if (!narrowed(p)) req.all = true;
  if (confirm("Replay every dead letter matching the filters?")) replay(req);
});
document.getElementById("purge-all").addEventListener("click", () => {
  const p = filterParams();
  if (!narrowed(p)) p.set("all", "true");
  purge(p.toString());
});
function timelineRow(m) {
  const tr = document.createElement("tr");
  tr.dataset.id = m.id;
  tr.dataset.outcome = m.outcome;
  if (m.in_error_queue) tr.className = "bad";
  cell(tr, String(m.at).replace("T", " ").replace("Z", "").slice(0, 23) + " UTC");
  cell(tr, m.endpoint);
  cell(tr, m.message_type + " v" + m.version);
  cell(tr, m.outcome + (m.in_error_queue ? " (in error queue)" : ""), "outcome err");
  cell(tr, m.delivery_count, "num");
  const why = [m.reason, m.error ? m.error.slice(0, 120) : null].filter((x) => x).join(": ");
  cell(tr, why || (m.delay_ms !== null && m.delay_ms !== undefined ? "again in " + age(m.delay_ms / 1000) : null));
  cell(tr, m.id);
  const actions = cell(tr, "");
  if (m.in_error_queue) {
    const b = document.createElement("button");
    b.textContent = "show"; b.className = "show"; b.dataset.id = m.id;
    b.addEventListener("click", () => show(m.id));
    actions.appendChild(b);
  }
  return tr;
}

document.getElementById("corr-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = document.getElementById("corr").value.trim();
  const body = document.querySelector("#corr-results tbody");
  const note = document.getElementById("corr-note");
  body.replaceChildren();
  note.textContent = "";
  if (!id) return;
  try {
    const t = await api("messages?correlation_id=" + encodeURIComponent(id));
    note.textContent = t.journal
      ? "journal: the last " + t.journal_capacity + " deliveries of this process" +
        (t.journal_dropped ? " (" + t.journal_dropped + " older ones dropped)" : "")
      : "no message journal installed: only dead letters are shown";
    if (t.dead_letters_error) say("error queues not searched: " + t.dead_letters_error, true);
    if (!t.messages.length) { const tr = document.createElement("tr"); cell(tr, "no message has correlation id " + id, "muted").colSpan = 8; body.appendChild(tr); }
    for (const m of t.messages) body.appendChild(timelineRow(m));
  } catch (e) { say(e.message, true); }
});

let sagasAvailable = true;
function sinceSeconds(iso) { return Math.max(0, (Date.now() - Date.parse(iso)) / 1000); }
async function loadSagas() {
  if (!sagasAvailable) return;
  let list;
  try { list = await api("sagas?status=active&limit=50"); }
  catch (e) {
    // 404: this admin API has no saga store; hide the section instead of failing the page.
    if (String(e.message).includes("no saga store")) { sagasAvailable = false; return; }
    throw e;
  }
  document.getElementById("sagas-section").hidden = false;
  const body = document.querySelector("#sagas tbody");
  body.replaceChildren();
  for (const s of list) {
    const tr = document.createElement("tr");
    tr.dataset.saga = s.saga; tr.dataset.key = s.key;
    const since = sinceSeconds(s.updated_at);
    if (since > 60) tr.className = "bad";
    const link = document.createElement("a");
    link.href = "#"; link.textContent = s.key;
    link.addEventListener("click", async (ev) => {
      ev.preventDefault();
      const d = await api("sagas/" + encodeURIComponent(s.saga) + "/" + encodeURIComponent(s.key));
      const pre = document.getElementById("saga-detail");
      pre.textContent = JSON.stringify(d, null, 2); pre.hidden = false;
    });
    cell(tr, s.saga);
    const k = document.createElement("td"); k.appendChild(link); tr.appendChild(k);
    cell(tr, s.state);
    cell(tr, age(since), "num");
    cell(tr, age(sinceSeconds(s.created_at)), "num");
    cell(tr, s.version, "num");
    cell(tr, s.pending_compensations, "num");
    cell(tr, s.armed_timeouts, "num");
    body.appendChild(tr);
  }
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    await Promise.all([loadEndpoints(), loadCharts(), loadQueues(), loadGroups(), loadDlq(), loadSummary(), loadSagas()]);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (document.getElementById("status").className === "error") say("");
  } catch (e) { say(e.message, true); }
  finally { busy = false; }
}
refresh();
setInterval(refresh, 2000);
