// fbci dashboard: renders the current page from its /api JSON and redraws on /ws events; never reloads.
"use strict";

const PAGE = document.body.dataset.page;
const PATIENT = window.FBCI_PATIENT;
const main = document.getElementById("main");
const SEVERITY = {1: "low", 2: "medium", 3: "high", 4: "critical"};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function table(headers, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, headers.map(h => el("th", {}, h)))),
            el("tbody", {}, rows));
}

const fmt = (x, d = 3) => (x === null || x === undefined) ? "–" : Number(x).toFixed(d);
const when = ms => new Date(ms).toISOString().replace("T", " ").slice(0, 19);
const short = hex => hex ? hex.slice(0, 12) + "…" : "";

async function getJSON(url, options) {
  const resp = await fetch(url, options);
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error ? `${body.error.data?.reason || body.error.code}: ${body.error.message}` : resp.status);
  return body;
}

function showError(err) {
  let box = document.getElementById("error");
  if (!box) { box = el("p", {id: "error", class: "bad"}); main.prepend(box); }
  box.textContent = String(err.message || err);
}

// --- patients -------------------------------------------------------------------------------------

function responseBadge(response) {
  const text = {emergency: "EMERGENCY (NEWS2 ≥ 7)", urgent: "urgent review", ward: "ward monitoring"}[response];
  return el("span", {class: `badge ${response}`}, text);
}

async function renderWard() {
  const data = await getJSON("/api/patients");
  const rows = data.patients.map(p => {
    const top = Object.entries(p.parameter_points).sort((a, b) => b[1] - a[1])[0];
    return el("tr", {"data-patient": p.patient},
      el("td", {}, el("a", {href: `/patients/${encodeURIComponent(p.patient)}`}, p.patient)),
      el("td", {}, responseBadge(p.response)),
      el("td", {class: "news2"}, String(p.news2)),
      el("td", {}, top[1] ? `${top[0]} ${top[1]}` : "–"),
      el("td", {class: p.alarm ? "score alarm" : "score"}, fmt(p.probability) + (p.alarm ? " ⚠" : "")),
      el("td", {}, p.drivers.slice(0, 3).map(d => `${d.vital} ${d.contribution >= 0 ? "+" : ""}${fmt(d.contribution, 2)}`).join(", ")),
      el("td", {}, `${p.at_h} h`));
  });
  main.replaceChildren(
    el("h1", {}, "Ward, by risk"),
    el("p", {class: "note"}, `Vitals: ${data.feed} (local, never on chain). Score: P(NEWS2 ≥ 5 within 6 h) by the `
      + `chain's deterioration model v${data.model_version}; alarm at ${fmt(data.threshold)} (${data.threshold_source}). `
      + "NEWS2 escalation (RCP 2017): 7 or more emergency; 5 or more, or 3 in one parameter, urgent review."
      + (data.model_version === 0 ? " Version 0 is the untrained genesis model: its scores mean nothing until hospitals train it." : "")),
    table(["patient", "response", "NEWS2", "highest parameter", "model score", "drivers (log-odds)", "charted to"],
          rows, {id: "ward"}));
}

async function renderPatient() {
  const data = await getJSON(`/api/patients/${encodeURIComponent(PATIENT)}`);
  const t = data.trend, latest = t.latest;
  const traces = [
    {name: "deterioration score", x: t.score_times_h, y: t.scores, yaxis: "y", mode: "lines+markers", line: {color: "#c62828"}},
    {name: "alarm threshold", x: [t.times_h[0], t.times_h[t.times_h.length - 1]], y: [t.threshold, t.threshold],
     yaxis: "y", mode: "lines", line: {dash: "dash", color: "#6a1b9a"}},
    {name: "NEWS2", x: t.times_h, y: t.news2, yaxis: "y2", mode: "lines", line: {shape: "hv", color: "#12355b"}},
    ...Object.entries(t.vitals).map(([name, ys]) => ({name, x: t.times_h, y: ys, yaxis: "y3", mode: "lines"})),
  ];
  const layout = {
    height: 640, margin: {t: 30, l: 60, r: 20, b: 40}, legend: {orientation: "h"},
    xaxis: {title: {text: "hours since admission"}, anchor: "y3"},
    yaxis: {domain: [0.72, 1], range: [0, 1], title: {text: "P(NEWS2 ≥ 5 in 6 h)"}},
    yaxis2: {domain: [0.5, 0.68], title: {text: "NEWS2"}},
    yaxis3: {domain: [0, 0.45], title: {text: "vitals"}},
    shapes: [5, 7].map(y => ({type: "line", xref: "paper", x0: 0, x1: 1, yref: "y2", y0: y, y1: y,
                               line: {color: y === 7 ? "#c62828" : "#ef6c00", width: 1, dash: "dot"}})),
  };
  let chart = document.getElementById("trend");
  if (!chart) {
    chart = el("div", {id: "trend", class: "chart"});
    main.replaceChildren(el("h1", {}, `Patient ${t.patient}`), el("div", {id: "summary"}), chart, el("div", {id: "drivers"}));
  }
  document.getElementById("summary").replaceChildren(
    el("p", {}, responseBadge(latest.response), ` NEWS2 ${latest.news2} at ${latest.at_h} h; model score `,
       el("span", {class: latest.alarm ? "alarm" : ""}, fmt(latest.probability)),
       ` (alarm at ${fmt(t.threshold)}: ${data.threshold_source}; model v${data.model_version}).`));
  document.getElementById("drivers").replaceChildren(
    el("h2", {}, "What drove the score"),
    table(["vital", "value now", "contribution to log-odds", "NEWS2 points"], latest.drivers.map(d =>
      el("tr", {}, el("td", {}, d.vital), el("td", {}, d.value === null ? "–" : fmt(d.value, 1)),
         el("td", {class: d.contribution > 0 ? "bad" : "good"}, fmt(d.contribution, 3)),
         el("td", {}, String(latest.parameter_points[d.vital === "consciousness" ? "consciousness" : d.vital] ?? "–"))))));
  await Plotly.react(chart, traces, layout, {displaylogo: false, responsive: true});
}

// --- alerts ---------------------------------------------------------------------------------------

const alertFilter = {class: "", severity: "", device: "", since: ""};

const sinceMs = () => Date.parse(alertFilter.since + "Z");  // the input is labelled UTC

function alertMatches(a) {
  return (!alertFilter.class || a.alert_class === alertFilter.class)
    && (!alertFilter.severity || a.severity >= Number(alertFilter.severity))
    && (!alertFilter.device || a.subject === alertFilter.device.toLowerCase())
    && (!alertFilter.since || a.block_time_ms >= sinceMs());
}

function ackCell(a) {
  if (a.ack) return el("span", {class: "good"}, `acknowledged by ${a.ack.by} at height ${a.ack.height}`);
  return el("button", {class: "ack", onclick: async ev => {
    ev.target.disabled = true; ev.target.textContent = "signing…";
    try { await getJSON(`/api/alerts/${a.alert_id}/ack`, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}); }
    catch (err) { ev.target.disabled = false; ev.target.textContent = "acknowledge"; showError(err); }
  }}, "acknowledge");
}

function alertRow(a) {
  return el("tr", {"data-alert": String(a.alert_id)},
    el("td", {}, String(a.alert_id)), el("td", {}, when(a.block_time_ms)), el("td", {}, String(a.height)),
    el("td", {}, a.alert_class), el("td", {class: `sev${a.severity}`}, SEVERITY[a.severity]),
    el("td", {}, a.hospital), el("td", {class: "mono", title: a.subject}, `${a.subject_kind} ${short(a.subject)}`),
    el("td", {}, String(a.count)), el("td", {}, fmt(a.score)), el("td", {class: "ackcell"}, ackCell(a)));
}

function alertFilters(classes) {
  const input = (key, label, node) => {
    node.value = alertFilter[key];
    node.addEventListener("change", () => { alertFilter[key] = node.value; refresh(); });
    return el("label", {}, label, node);
  };
  return el("div", {class: "filters"},
    input("class", "class", el("select", {id: "f-class"}, ["", ...classes].map(c => el("option", {value: c}, c || "any")))),
    input("severity", "min severity", el("select", {id: "f-severity"},
      ["", "1", "2", "3", "4"].map(s => el("option", {value: s}, s ? SEVERITY[s] : "any")))),
    input("device", "device pseudonym (hex)", el("input", {id: "f-device", size: 20})),
    input("since", "since (UTC)", el("input", {id: "f-since", type: "datetime-local"})));
}

async function renderAlerts() {
  const q = new URLSearchParams({class: alertFilter.class, severity: alertFilter.severity, device: alertFilter.device,
                                 since_ms: alertFilter.since ? String(sinceMs()) : ""});
  const data = await getJSON(`/api/alerts?${q}`);
  main.replaceChildren(
    el("h1", {}, "IDS alerts"),
    el("p", {class: "note"}, `Alerts committed in blocks ${data.window[0]}–${data.window[1]}, newest first, live. `
      + "An acknowledgement is an ids.ack_alert transaction signed with this dashboard's key, visible to every member."),
    alertFilters(data.classes),
    table(["id", "time (UTC)", "height", "class", "severity", "reported by", "subject", "count", "score", "acknowledgement"],
          data.rows.map(alertRow), {id: "alerts"}));
}

function onAlert(a) {
  const body = document.querySelector("#alerts tbody");
  if (!body || !alertMatches(a) || body.querySelector(`tr[data-alert="${a.alert_id}"]`)) return;
  body.prepend(alertRow(a));
}

function onAck(ev) {
  const cell = document.querySelector(`#alerts tr[data-alert="${ev.alert_id}"] .ackcell`);
  if (cell) cell.replaceChildren(el("span", {class: "good"}, `acknowledged by ${ev.by} at height ${ev.height}`));
}

// --- models ---------------------------------------------------------------------------------------

async function renderModels() {
  const data = await getJSON("/api/models");
  const sections = data.models.map(m => {
    const rounds = m.rounds.slice().reverse().map(r => el("tr", {},
      el("td", {}, String(r.round)), el("td", {class: r.status === "failed" ? "bad" : ""}, r.status + (r.reason ? `: ${r.reason}` : "")),
      el("td", {}, `v${r.base_version} → ${r.new_version === null ? "–" : "v" + r.new_version}`),
      el("td", {}, `${r.opened_height}–${r.closed_height ?? "open"}`),
      el("td", {}, r.participants.filter(p => p.accepted).map(p => p.hospital).sort().join(", ") || "–"),
      el("td", {class: "bad"}, r.participants.filter(p => !p.accepted).map(p => `${p.hospital}: ${p.excluded}`).join("; ") || "–"),
      el("td", {}, r.participants.filter(p => p.norm_clipped).map(p => p.hospital).join(", ") || "–")));
    const privacy = m.privacy.length
      ? table(["hospital", "ε", "δ", "as of round"], m.privacy.map(p => el("tr", {}, el("td", {}, p.hospital),
          el("td", {}, fmt(p.epsilon, 2)), el("td", {}, p.delta.toExponential(1)), el("td", {}, String(p.round)))))
      : el("p", {class: "note"}, "No update of this model reported differential privacy (trained without --dp-noise).");
    const section = el("section", {"data-model": m.id},
      el("h2", {}, `${m.id} — v${m.latest_version}`),
      el("p", {class: "note"}, `${m.task}, rule ${m.rule}, ${m.num_params} parameters, rounds of ${m.round_length_blocks} blocks.`),
      el("h3", {}, "Rounds (provenance: which hospitals made each version)"),
      table(["round", "status", "version", "blocks", "accepted", "rejected (reason)", "clipped"], rounds),
      el("h3", {}, "Consent"), el("p", {class: "note", "data-consent": m.id}, m.consent_note),
      ...(m.withdrawn.length ? [table(["round", "based on", "patients who withdrew", "first withdrawal at height"],
        m.withdrawn.map(t => el("tr", {}, el("td", {}, String(t.round)), el("td", {}, `v${t.base_version}`),
          el("td", {class: "bad"}, String(t.revoked_patients)), el("td", {}, String(t.first_withdrawn_height)))),
        {id: `withdrawn-${m.id}`})] : []),
      el("h3", {}, "Privacy spent"), privacy,
      el("h3", {}, "Accuracy"), el("p", {class: "note"}, m.evaluation_note));
    if (m.evaluation.length) {
      const chart = el("div", {class: "chart", id: `eval-${m.id}`});
      section.append(chart);
      queueMicrotask(() => Plotly.react(chart, [{x: m.evaluation.map(e => e.version), y: m.evaluation.map(e => e.auroc),
        mode: "lines+markers", name: "AUROC on this ward"}],
        {height: 280, margin: {t: 20, l: 60, r: 20, b: 40}, xaxis: {title: {text: "version"}, dtick: 1},
         yaxis: {title: {text: "AUROC"}, range: [0, 1]}}, {displaylogo: false}));
    }
    return section;
  });
  main.replaceChildren(el("h1", {}, "Federated models"), ...sections);
}

// --- network --------------------------------------------------------------------------------------

async function renderNetwork() {
  const n = await getJSON("/api/network");
  const vrows = n.validators.map(v => el("tr", {"data-validator": v.name},
    el("td", {}, v.name), el("td", {class: "mono"}, v.url),
    ...(v.reachable ? [el("td", {}, String(v.height)), el("td", {}, String(v.view)), el("td", {}, fmt(v.view_changes, 0)),
        el("td", {}, String(v.peers)), el("td", {}, String(v.mempool)), el("td", {}, v.syncing ? "syncing" : "–"),
        el("td", {}, fmt(v.last_commit_age_s, 1) + " s"), el("td", {}, fmt(v.evidence, 0))]
      : [el("td", {class: "bad", colspan: "8"}, `unreachable: ${v.error}`)])));
  const brows = n.recent_blocks.map(b => el("tr", {}, el("td", {}, String(b.height)), el("td", {}, when(b.time_ms)),
    el("td", {}, b.proposer), el("td", {}, String(b.num_txs)), el("td", {}, b.signers.join(", ")),
    el("td", {class: b.missing.length ? "bad" : ""}, b.missing.join(", ") || "–")));
  const missing = Object.entries(n.missing_signatures);
  main.replaceChildren(
    el("h1", {}, "Network"),
    el("p", {class: "note"}, `Median block interval ${fmt(n.block_interval_s, 2)} s over the recent blocks; blocks ${n.window[0]}–${n.window[1]} read.`),
    table(["validator", "RPC", "height", "view", "view changes", "peers", "mempool", "sync", "last commit", "evidence"], vrows, {id: "validators"}),
    el("h2", {}, "Missing signatures in recent commit certificates"),
    el("p", {class: "note"}, "A certificate holds the first 2f + 1 commit votes this validator received, so with every validator up one "
      + "of four is routinely missing; a validator missing from every certificate is down, cut off or slow."),
    missing.length ? table(["validator", "certificates without its signature"], missing.map(([k, c]) => el("tr", {}, el("td", {}, k), el("td", {}, String(c)))))
                   : el("p", {}, "Every validator signed every certificate read."),
    el("h2", {}, "Recent blocks"),
    table(["height", "time (UTC)", "proposer", "txs", "signed", "missing"], brows, {id: "blocks"}),
    el("h2", {}, "Evidence"),
    n.evidence.length ? table(["height", "submitted by", "detail"], n.evidence.map(e => el("tr", {}, el("td", {}, String(e.height)), el("td", {}, e.actor), el("td", {}, e.detail))))
                      : el("p", {}, "No consensus.evidence transaction in the blocks read."),
    el("h2", {}, "Validator set"),
    el("p", {class: "note"}, "The current set, from the validators method; it has been the genesis set since block 1 (this chain has no membership transactions yet)."),
    table(["name", "public key", "p2p"], n.validator_set.map(v => el("tr", {}, el("td", {}, v.name), el("td", {class: "mono"}, short(v.public_key)), el("td", {}, v.p2p_address)))));
}

// --- audit ----------------------------------------------------------------------------------------

const auditFilter = {actor: "", kind: ""};

async function renderAudit() {
  const q = new URLSearchParams(auditFilter);
  const a = await getJSON(`/api/audit?${q}`);
  const select = (key, options) => {
    const node = el("select", {id: `f-${key}`}, ["", ...options].map(o => el("option", {value: o}, o || "any")));
    node.value = auditFilter[key];
    node.addEventListener("change", () => { auditFilter[key] = node.value; refresh(); });
    return el("label", {}, key, node);
  };
  main.replaceChildren(
    el("h1", {}, "Audit trail"),
    el("p", {class: "note"}, `${a.note} Blocks ${a.window[0]}–${a.window[1]}.`),
    el("div", {class: "filters"}, select("actor", a.actors), select("kind", a.kinds)),
    el("h2", {}, "Reads and changes served (audit trail)"),
    el("p", {class: "note"}, a.trail_note),
    table(["validator", "RPC", "trail"], a.trail.map(v => el("tr", {"data-trail": v.url},
      el("td", {}, v.observer || "?"), el("td", {class: "mono"}, v.url),
      el("td", {class: v.status === "ok" ? "" : "bad"}, v.message))), {id: "trail"}),
    a.events.length ? table(["time (UTC)", "validator", "#", "who", "roles", "action", "what", "outcome", "proof"],
      a.events.map(e => el("tr", {"data-event": `${e.observer}/${e.seq}`},
        el("td", {}, when(e.recorded_ms)), el("td", {}, e.observer), el("td", {}, String(e.seq)), el("td", {}, e.agent),
        el("td", {}, e.agent_roles.join(", ")), el("td", {}, e.action), el("td", {}, `${e.entity_type} ${e.entity}`),
        el("td", {class: e.outcome === "0" ? "good" : "bad"}, e.outcome === "0" ? "ok" : `refused: ${e.outcome_reason}`),
        el("td", {class: e.proof === "verified" ? "good" : e.proof === "failed" ? "bad" : "", title: e.proof_detail},
          `${e.proof}: ${e.proof_detail}`))), {id: "events"})
      : el("p", {}, "No audit event readable from any validator."),
    el("h2", {}, "Changes (transactions)"),
    table(["height", "time (UTC)", "who", "kind", "what", "outcome", "tx"], a.rows.map(t => el("tr", {},
      el("td", {}, String(t.height)), el("td", {}, when(t.time_ms)), el("td", {}, t.actor), el("td", {}, t.kind),
      el("td", {}, t.detail), el("td", {class: t.ok ? "good" : "bad"}, t.outcome), el("td", {class: "mono"}, short(t.hash)))),
      {id: "audit"}));
}

// --- live updates ---------------------------------------------------------------------------------

const RENDER = {patients: () => PATIENT ? renderPatient() : renderWard(), alerts: renderAlerts, models: renderModels,
                network: renderNetwork, audit: renderAudit};
const REFRESH_ON = {patients: ["ward", "block"], alerts: [], models: ["block"], network: ["block"], audit: ["block"]};
let pending = null, running = false;

function refresh(delayMs = 150) {  // events come in bursts (a block, its alerts): one redraw for each burst
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    if (running) { refresh(); return; }
    running = true;
    try { await RENDER[PAGE](); document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1); }
    catch (err) { showError(err); }
    finally { running = false; }
  }, delayMs);
}

function connect() {
  const live = document.getElementById("live");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { live.className = "live on"; live.textContent = "live"; };
  ws.onclose = () => { live.className = "live off"; live.textContent = "reconnecting…"; setTimeout(connect, 1000); };
  ws.onmessage = msg => {
    const ev = JSON.parse(msg.data);
    if (PAGE === "alerts" && ev.type === "alert") onAlert(ev.alert);
    if (PAGE === "alerts" && ev.type === "ack") onAck(ev);
    if (REFRESH_ON[PAGE].includes(ev.type)) refresh();
  };
}

document.querySelector(`nav a[data-nav="${PAGE}"]`)?.classList.add("current");
refresh(0);
connect();
