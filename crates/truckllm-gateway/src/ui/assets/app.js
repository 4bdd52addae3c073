// TruckLLM dashboard: one script for every page. Everything it shows comes from the admin API
// (/admin/...), read with the session cookie; every change carries the session's CSRF token.
// Text from the gateway is only ever set as textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = 5000;
const state = { session: null, page: "overview", range: "1h", timer: null, filter: {} };

// ---- helpers -------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

const isAdmin = () => state.session && state.session.role === "admin";
const int = (n) => Math.round(Number(n) || 0).toLocaleString("en-US");
const cost = (n) => "$" + (Number(n) || 0).toFixed(6);
const pct = (n) => ((Number(n) || 0) * 100).toFixed(1) + "%";
const ms = (n) => (Number(n) || 0).toFixed(1) + " ms";

class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code || null; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = state.session ? state.session.csrf : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.assign("/ui/login");
    throw new ApiError(401, "signed out");
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const message = data && data.error && data.error.message ? data.error.message : text || response.statusText;
    throw new ApiError(response.status, message, data && data.error ? data.error.code : null);
  }
  return data;
}

function showError(e) {
  document.getElementById("error").textContent = e ? "Error: " + e.message : "";
}

function stamp() {
  document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString();
}

function table(columns, rows, attrs) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, scope: "col", text: c.title })));
  const body = rows.map((row) => el("tr", row.attrs || {}, columns.map((c) => {
    const value = c.value(row);
    const cell = el("td", { class: c.num ? "num" : c.name ? "name" : null });
    if (value instanceof Node) cell.append(value); else cell.textContent = value === undefined || value === null ? "–" : String(value);
    if (c.name && !(value instanceof Node)) cell.title = cell.textContent;
    return cell;
  })));
  return el("div", { class: "table-wrap" }, el("table", attrs || {}, el("thead", {}, head), el("tbody", {}, body)));
}

function meter(used, limit, label) {
  if (limit === null || limit === undefined) {
    return el("span", { class: "meter" }, el("span", { class: "text", text: int(used) + " (no limit)" }));
  }
  const share = limit > 0 ? Math.min(1, used / limit) : 1;
  const fill = el("span", { class: "fill" + (share >= 1 ? " full" : share >= 0.8 ? " high" : "") });
  fill.style.width = (share * 100).toFixed(1) + "%";
  return el("span", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": used, "aria-label": label },
    el("span", { class: "track" }, fill), el("span", { class: "text", text: label }));
}

function figure(name, label, value, shown) {
  return el("div", { class: "card" },
    el("div", { class: "label", text: label }),
    el("div", { class: "value", "data-figure": name, "data-value": value, text: shown }));
}

function region(id) {
  let node = document.getElementById(id);
  if (!node) node = el("div", { id });
  return node;
}

function fill(id, ...children) {
  const node = document.getElementById(id);
  if (node) node.replaceChildren(...children.flat());
}

// ---- overview ------------------------------------------------------------------------------

const RANGES = ["15m", "1h", "24h", "7d", "30d"];

function overviewFrame() {
  const buttons = RANGES.map((r) => el("button", {
    type: "button", "aria-pressed": String(r === state.range), "data-range": r,
    onclick: () => { state.range = r; renderFrame(); refresh(); },
  }, r));
  return [el("h1", { text: "Overview" }), el("div", { class: "ranges", role: "group", "aria-label": "Range" }, buttons), region("overview-body")];
}

function chart(steps) {
  const box = svg("svg", { class: "chart", viewBox: "0 0 600 120", preserveAspectRatio: "none", role: "img", "aria-label": "Requests per step" });
  const max = Math.max(1, ...steps.map((s) => s.requests));
  const width = 600 / Math.max(1, steps.length);
  steps.forEach((s, i) => {
    const h = (s.requests / max) * 110;
    const bar = svg("rect", { x: i * width + 1, y: 120 - h, width: Math.max(1, width - 2), height: h });
    const title = svg("title", {});
    title.textContent = new Date(s.start_ms).toLocaleString() + ": " + s.requests + " requests";
    bar.append(title);
    box.append(bar);
  });
  return box;
}

function usageTable(title, rows) {
  if (!rows || rows.length === 0) return null;
  return el("section", {}, el("h2", { text: title }), table([
    { title: "Name", name: true, value: (r) => r.name },
    { title: "Requests", num: true, value: (r) => int(r.requests) },
    { title: "Tokens", num: true, value: (r) => int(r.tokens) },
    { title: "Cost", num: true, value: (r) => cost(r.cost) },
    { title: "Error rate", num: true, value: (r) => pct(r.error_rate) },
    { title: "Latency", num: true, value: (r) => r.mean_latency_ms !== undefined ? ms(r.mean_latency_ms) + " mean" : r.latency_p50_ms !== undefined ? ms(r.latency_p50_ms) + " p50" : "–" },
  ], rows.map((r) => Object.assign({}, r, { name: r.name === "" ? "(none: refused)" : r.name }))));
}

async function overviewData() {
  const s = await api("GET", "/admin/usage/summary?range=" + encodeURIComponent(state.range));
  const parts = [];
  if (!s.available) {
    parts.push(el("p", { class: "notice", "data-unavailable": s.range, text: "Not available for " + s.range + ": " + s.reason }));
  } else {
    const t = s.total;
    parts.push(el("p", { class: "muted", text: "Last " + s.range + " from the " + (s.source === "rollups" ? "runtime store's roll-ups (whole " + s.rollup_step_secs + " s steps)" : "PostgreSQL usage history") + "." }));
    parts.push(el("div", { class: "cards" },
      figure("requests", "Requests", t.requests, int(t.requests)),
      figure("tokens", "Tokens", t.tokens, int(t.tokens)),
      figure("cost", "Cost", t.cost, cost(t.cost)),
      figure("error_rate", "Error rate", t.error_rate, pct(t.error_rate)),
      figure("errors", "Errors", t.errors, int(t.errors)),
      figure("mean_latency_ms", "Mean latency", t.mean_latency_ms, ms(t.mean_latency_ms))));
  }
  const log = s.log || {};
  if (log.unavailable) {
    parts.push(el("p", { class: "notice", text: "Latency percentiles: " + log.unavailable }));
  } else {
    parts.push(el("div", { class: "cards" },
      figure("p50", "p50 latency", log.latency_p50_ms, ms(log.latency_p50_ms)),
      figure("p95", "p95 latency", log.latency_p95_ms, ms(log.latency_p95_ms)),
      figure("p99", "p99 latency", log.latency_p99_ms, ms(log.latency_p99_ms)),
      figure("logged", "Logged requests that reached a provider", log.requests, int(log.requests))));
  }
  if (s.available && s.steps && s.steps.length) parts.push(el("section", {}, el("h2", { text: "Requests over time" }), chart(s.steps)));
  if (s.available) {
    parts.push(el("div", { class: "grid2" },
      usageTable("By provider", s.by_provider), usageTable("By provider key", s.by_key),
      usageTable("By client (limited clients)", s.by_client), usageTable("By team", s.by_team)));
  }
  if (!log.unavailable) {
    parts.push(el("div", { class: "grid2" }, usageTable("By model (request log)", log.by_model), usageTable("By client (request log)", log.by_client)));
  }
  fill("overview-body", parts);
}

// ---- providers -----------------------------------------------------------------------------

function providersFrame() {
  return [el("h1", { text: "Providers and keys" }),
    el("p", { class: "muted", text: "Usage over the last 60 s across every instance sharing the store, against each key's limits. Cooldowns: shared through the store, and this instance's own." }),
    region("providers-body")];
}

async function providersData() {
  const data = await api("GET", "/admin/providers");
  fill("providers-body", data.providers.map((p) => el("section", { "data-provider": p.id },
    el("h2", { text: p.id }),
    el("p", { class: "muted", text: "Models: " + (p.models.length ? p.models.join(", ") : "any") }),
    table([
      { title: "Key", name: true, value: (k) => k.id },
      { title: "Requests / min", value: (k) => meter(k.window.req, k.limits.req_per_min, int(k.window.req) + (k.limits.req_per_min ? " / " + int(k.limits.req_per_min) : "")) },
      { title: "Tokens / min", value: (k) => meter(k.window.tokens, k.limits.tokens_per_min, int(k.window.tokens) + (k.limits.tokens_per_min ? " / " + int(k.limits.tokens_per_min) : "")) },
      { title: "Error rate", num: true, value: (k) => pct(k.window.error_rate) },
      { title: "Mean latency", num: true, value: (k) => ms(k.window.mean_latency_ms) },
      { title: "Cooldown", value: (k) => k.cooldown.shared_until ? el("span", { class: "bad", text: "until " + k.cooldown.shared_until }) : k.cooldown.this_instance ? el("span", { class: "bad", text: "here" }) : el("span", { class: "ok", text: "none" }) },
      { title: "Latency EWMA here", num: true, value: (k) => ms(k.this_instance.ewma_latency_ms) },
    ], p.keys.map((k) => Object.assign({ attrs: { "data-key": k.id } }, k))))));
}

// ---- clients and teams ---------------------------------------------------------------------

function budgetCell(entry) {
  const b = entry.budget_status;
  if (b) {
    const label = b.spent.toFixed(4) + " / " + b.limit.toFixed(4) + " per " + b.period + (b.resets_at ? ", resets " + b.resets_at : "");
    return meter(b.spent, b.limit, label);
  }
  if (entry.budget) {
    const limit = entry.budget.max_cost !== undefined ? "$" + entry.budget.max_cost : int(entry.budget.max_tokens) + " tokens";
    return el("span", { text: limit + " per " + entry.budget.period });
  }
  return el("span", { class: "muted", text: "none" });
}

function secretBox(title, id, key) {
  return el("div", { class: "secret", role: "status" },
    el("strong", { text: title + " " }), el("span", { text: "Copy it now: it is shown this once. " }),
    el("code", { "data-secret": id, text: key }));
}

async function change(method, path, body, done) {
  try {
    const answer = await api(method, path, body);
    showError(null);
    if (done) done(answer);
    await refresh();
  } catch (e) { showError(e); }
}

function keyActions(k) {
  if (!isAdmin()) return el("span", { class: "muted", text: "read only" });
  const id = encodeURIComponent(k.id);
  return el("div", { class: "actions" },
    el("button", { type: "button", class: "change", "data-action": "rotate", onclick: () => change("POST", "/admin/keys/" + id + "/rotate", { grace_secs: 0 }, (a) => fill("key-secret", secretBox("New secret for " + k.id + ".", k.id, a.key))) }, "Rotate"),
    k.disabled
      ? el("button", { type: "button", class: "change", "data-action": "enable", onclick: () => change("POST", "/admin/keys/" + id + "/enable") }, "Enable")
      : el("button", { type: "button", class: "change", "data-action": "disable", onclick: () => change("POST", "/admin/keys/" + id + "/disable") }, "Disable"),
    el("button", { type: "button", class: "change danger", "data-action": "revoke", onclick: () => {
      if (window.confirm("Revoke client key " + k.id + "? Callers using it are refused at once.")) change("DELETE", "/admin/keys/" + id);
    } }, "Revoke"));
}

function createKeyForm() {
  const id = el("input", { name: "id", id: "new-key-id", placeholder: "generated if empty", autocomplete: "off" });
  const team = el("input", { name: "team", id: "new-key-team", autocomplete: "off" });
  const rpm = el("input", { name: "req_per_min", id: "new-key-rpm", type: "number", min: "1", step: "any" });
  const budget = el("input", { name: "max_cost", id: "new-key-budget", type: "number", min: "0", step: "any" });
  const period = el("select", { name: "period", id: "new-key-period" }, ["day", "hour", "week", "month", "total"].map((p) => el("option", { value: p, text: p })));
  return el("form", { class: "inline", id: "create-key", onsubmit: (ev) => {
    ev.preventDefault();
    const body = {};
    if (id.value.trim()) body.id = id.value.trim();
    if (team.value.trim()) body.team = team.value.trim();
    if (rpm.value) body.limits = { req_per_min: Number(rpm.value) };
    if (budget.value) body.budget = { max_cost: Number(budget.value), period: period.value };
    change("POST", "/admin/keys", body, (a) => { fill("key-secret", secretBox("Key " + a.id + " created.", a.id, a.key)); id.value = ""; });
  } },
  el("label", { for: "new-key-id" }, "Id", id), el("label", { for: "new-key-team" }, "Team", team),
  el("label", { for: "new-key-rpm" }, "Requests / min", rpm), el("label", { for: "new-key-budget" }, "Budget ($)", budget),
  el("label", { for: "new-key-period" }, "Per", period),
  el("button", { type: "submit", class: "primary change" }, "Create key"));
}

function createTeamForm() {
  const id = el("input", { name: "id", id: "new-team-id", required: true, autocomplete: "off" });
  return el("form", { class: "inline", id: "create-team", onsubmit: (ev) => {
    ev.preventDefault();
    change("POST", "/admin/teams", { id: id.value.trim() }, () => { id.value = ""; });
  } }, el("label", { for: "new-team-id" }, "Team id", id), el("button", { type: "submit", class: "primary change" }, "Create team"));
}

function budgetForm() {
  const target = el("select", { name: "target", id: "budget-target" });
  const amount = el("input", { name: "max_cost", id: "budget-amount", type: "number", min: "0", step: "any", placeholder: "empty: no budget" });
  const period = el("select", { name: "period", id: "budget-period" }, ["day", "hour", "week", "month", "total"].map((p) => el("option", { value: p, text: p })));
  return el("form", { class: "inline", id: "set-budget", onsubmit: (ev) => {
    ev.preventDefault();
    const [kind, ...rest] = target.value.split(":");
    const id = rest.join(":");
    if (!id) return;
    const budget = amount.value ? { max_cost: Number(amount.value), period: period.value } : null;
    change("PATCH", "/admin/" + kind + "/" + encodeURIComponent(id), { budget });
  } },
  el("label", { for: "budget-target" }, "Key or team", target), el("label", { for: "budget-amount" }, "Budget ($)", amount),
  el("label", { for: "budget-period" }, "Per", period), el("button", { type: "submit", class: "primary change" }, "Set budget"));
}

// Fills the budget form's choice of keys and teams, keeping what is chosen.
function budgetTargets(keys, teams) {
  const select = document.getElementById("budget-target");
  if (!select) return;
  const chosen = select.value;
  select.replaceChildren(
    ...keys.map((k) => el("option", { value: "keys:" + k.id, text: "key " + k.id })),
    ...teams.map((t) => el("option", { value: "teams:" + t.id, text: "team " + t.id })));
  if (chosen) select.value = chosen;
}

function clientsFrame() {
  const parts = [el("h1", { text: "Clients and teams" })];
  if (isAdmin()) parts.push(el("section", {}, el("h2", { text: "New client key" }), createKeyForm(), region("key-secret")));
  if (isAdmin()) parts.push(el("section", {}, el("h2", { text: "Budget of a key or team" }), budgetForm()));
  parts.push(el("section", {}, el("h2", { text: "Client keys" }), region("keys-body")));
  if (isAdmin()) parts.push(el("section", {}, el("h2", { text: "New team" }), createTeamForm()));
  parts.push(el("section", {}, el("h2", { text: "Teams" }), region("teams-body")));
  return parts;
}

function limitsText(l) {
  if (!l) return "–";
  const parts = [];
  if (l.req_per_min !== undefined) parts.push(int(l.req_per_min) + " req/min");
  if (l.tokens_per_min !== undefined) parts.push(int(l.tokens_per_min) + " tok/min");
  return parts.join(", ") || "–";
}

async function clientsData() {
  const [keys, teams] = await Promise.all([api("GET", "/admin/keys"), api("GET", "/admin/teams")]);
  budgetTargets(keys.keys, teams.teams);
  fill("keys-body", keys.keys.length === 0 ? el("p", { class: "muted", text: "No client keys: the gateway is in open mode." }) : table([
    { title: "Id", name: true, value: (k) => k.id },
    { title: "Team", name: true, value: (k) => k.team },
    { title: "Status", value: (k) => el("span", { class: k.status === "active" ? "ok" : "bad", "data-status": k.status, text: k.status }) },
    { title: "Limits", value: (k) => limitsText(k.limits) },
    { title: "Budget", value: budgetCell },
    { title: "Actions", value: keyActions },
  ], keys.keys.map((k) => Object.assign({ attrs: { "data-key": k.id } }, k))));
  fill("teams-body", teams.teams.length === 0 ? el("p", { class: "muted", text: "No teams." }) : table([
    { title: "Id", name: true, value: (t) => t.id },
    { title: "Limits", value: (t) => limitsText(t.limits) },
    { title: "Budget", value: budgetCell },
    { title: "Providers", name: true, value: (t) => (t.allowed_providers || []).join(", ") },
    { title: "Actions", value: (t) => isAdmin() ? el("button", { type: "button", class: "change danger", "data-action": "delete-team", onclick: () => {
      if (window.confirm("Delete team " + t.id + "?")) change("DELETE", "/admin/teams/" + encodeURIComponent(t.id));
    } }, "Delete") : el("span", { class: "muted", text: "read only" }) },
  ], teams.teams.map((t) => Object.assign({ attrs: { "data-team": t.id } }, t))));
}

// ---- requests ------------------------------------------------------------------------------

const FILTERS = ["since", "until", "provider", "key", "client", "model", "status", "grep", "limit"];

function requestsFrame() {
  const inputs = FILTERS.map((name) => el("input", { name, id: "filter-" + name, value: state.filter[name] || (name === "since" ? "1h" : name === "limit" ? "100" : ""), autocomplete: "off", size: name === "grep" ? 14 : 9 }));
  const form = el("form", { class: "inline", id: "request-filter", onsubmit: (ev) => {
    ev.preventDefault();
    state.filter = {};
    inputs.forEach((i) => { if (i.value.trim()) state.filter[i.name] = i.value.trim(); });
    refresh();
  } }, inputs.map((i) => el("label", { for: i.id }, i.name, i)), el("button", { type: "submit", class: "primary" }, "Search"));
  if (!state.filter.since) state.filter = { since: "1h", limit: "100" };
  return [el("h1", { text: "Requests" }), el("section", {}, form,
    el("p", { class: "muted", text: "Filters as in truckllm logs search: since/until take 15m, 2h or a time; status takes 429 or 5xx." })),
    region("requests-body"), el("section", {}, el("h2", { text: "Record" }), el("pre", { id: "record", text: "Choose a request to see its whole record." }))];
}

async function requestsData() {
  const query = new URLSearchParams(state.filter).toString();
  const data = await api("GET", "/admin/requests?" + query);
  const body = document.getElementById("requests-body");
  if (body) body.dataset.query = query;
  if (!data.available) { fill("requests-body", el("p", { class: "notice", text: data.reason })); return; }
  fill("requests-body", el("p", { class: "muted", text: data.matched + " matched; newest " + data.records.length + " shown." }), table([
    { title: "Time", value: (r) => r.ts },
    { title: "Status", num: true, value: (r) => el("span", { class: r.status >= 400 ? "bad" : "ok", text: r.status }) },
    { title: "Provider/key", name: true, value: (r) => (r.provider || "–") + "/" + (r.key || "–") },
    { title: "Model", name: true, value: (r) => r.model },
    { title: "Client", name: true, value: (r) => r.client },
    { title: "Tokens", num: true, value: (r) => int((r.prompt_tokens || 0) + (r.completion_tokens || 0)) },
    { title: "Latency", num: true, value: (r) => r.latency_ms === undefined || r.latency_ms === null ? "–" : ms(r.latency_ms) },
    { title: "Request", value: (r) => el("button", { type: "button", "data-request": r.request_id, onclick: () => { document.getElementById("record").textContent = JSON.stringify(r, null, 2); } }, "Open " + (r.request_id || "").slice(0, 12)) },
  ], data.records));
}

// ---- config --------------------------------------------------------------------------------

function diffView(text) {
  const pre = el("pre", { id: "diff" });
  for (const line of text.split("\n")) {
    const cls = line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : null;
    pre.append(el("span", { class: cls, text: line + "\n" }));
  }
  if (!text.trim()) pre.textContent = "The two versions are the same.";
  return pre;
}

function configFrame() {
  const from = el("input", { id: "diff-from", type: "number", min: "1", size: 6 });
  const to = el("input", { id: "diff-to", type: "number", min: "1", size: 6 });
  const form = el("form", { class: "inline", id: "diff-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const q = new URLSearchParams();
      if (from.value) q.set("from", from.value);
      if (to.value) q.set("to", to.value);
      const d = await api("GET", "/admin/config/diff?" + q.toString());
      fill("diff-body", el("p", { class: "muted", text: "Version " + d.from + " → version " + d.to + " (secrets redacted)" }), diffView(d.diff));
      showError(null);
    } catch (e) { showError(e); }
  } }, el("label", { for: "diff-from" }, "From version", from), el("label", { for: "diff-to" }, "To version", to), el("button", { type: "submit", class: "primary" }, "Diff"));
  return [el("h1", { text: "Config" }), region("config-status"), el("section", {}, el("h2", { text: "Versions" }), region("versions-body")),
    el("section", {}, el("h2", { text: "Diff" }), form, region("diff-body"))];
}

async function rollback(version) {
  if (!window.confirm("Roll back to config version " + version + "? Its text becomes a new current version, applied at once on every instance.")) return;
  const done = (a) => {
    fill("config-status", el("p", { class: "notice", "data-rolled-back": a.version, text: "Rolled back to version " + version + ": now running version " + a.running + "." }));
  };
  try {
    done(await api("POST", "/admin/config/rollback", { version }));
    showError(null);
    await refresh();
  } catch (e) {
    // Keys revoked since that version would work again, or anyone could call: say so, and
    // ask once more.
    if (e.status === 409 && (e.code === "would_revive_keys" || e.code === "would_open_gateway")) {
      if (window.confirm(e.message.replace(/; revoke them again.*$/, "") + ".\n\nRoll back anyway?")) {
        await change("POST", "/admin/config/rollback", { version, force: true }, done);
      }
    } else {
      showError(e);
    }
  }
}

async function showVersion(version) {
  try {
    const v = await api("GET", "/admin/config/show?version=" + version);
    fill("diff-body", el("p", { class: "muted", text: "Version " + v.version + " (secrets redacted)" }), el("pre", { id: "version-text", text: v.text }));
  } catch (e) { showError(e); }
}

async function configData() {
  const data = await api("GET", "/admin/config/versions");
  fill("versions-body", el("p", { class: "muted", "data-running": data.running, text: "Running version " + data.running + "; current in the store: " + data.current + "." }), table([
    { title: "Version", num: true, value: (v) => v.version + (v.current ? " (current)" : "") },
    { title: "Saved (UTC)", value: (v) => v.time },
    { title: "Author", name: true, value: (v) => v.author },
    { title: "Comment", name: true, value: (v) => v.comment },
    { title: "Actions", value: (v) => el("div", { class: "actions" },
      el("button", { type: "button", "data-show": v.version, onclick: () => showVersion(v.version) }, "Show"),
      isAdmin() && !v.current ? el("button", { type: "button", class: "change danger", "data-rollback": v.version, onclick: () => rollback(v.version) }, "Roll back") : null) },
  ], data.versions.map((v) => Object.assign({ attrs: { "data-version": v.version } }, v))));
}

// ---- storage -------------------------------------------------------------------------------

function storageFrame() {
  return [el("h1", { text: "Storage" }), region("storage-body")];
}

async function storageData() {
  const s = await api("GET", "/admin/storage");
  const fact = (name, value, cls) => [el("dt", { text: name }), el("dd", { class: cls, "data-fact": name, text: value })];
  const replay = s.last_replay ? s.last_replay.at + ": " + s.last_replay.replayed_increments + " increments after " + s.last_replay.outage_seconds.toFixed(1) + " s" : "none since start";
  fill("storage-body", el("section", {}, el("dl", { class: "facts" },
    fact("Backend", s.backend), fact("Stack", s.stack),
    fact("Health", s.healthy ? "answers (" + s.probe_ms.toFixed(1) + " ms)" : "failing: " + s.health_error, s.healthy ? "ok" : "bad"),
    fact("Degraded", s.tracked ? (s.degraded ? "yes, since " + s.degraded_since + " (" + s.degraded_reason + ")" : "no") : "never (the in-memory store cannot go away)", s.degraded ? "bad" : "ok"),
    fact("Time degraded", s.degraded_seconds_total.toFixed(1) + " s in " + s.outages + " outages"),
    fact("Last replay", replay),
    fact("Journal length", s.journal_length === null ? "not exposed by the store stack (see truckllm_storage_* on /metrics)" : int(s.journal_length)),
    fact("Connections", s.connections.active + " active, " + s.connections.idle + " idle"),
    fact("Roll-ups", s.rollups.keep_secs ? "every " + s.rollups.step_secs + " s, kept " + s.rollups.keep_secs + " s" : "off"),
    fact("Usage history", s.history ? "PostgreSQL (storage.history)" : "not configured"))));
}

// ---- frame ---------------------------------------------------------------------------------

const PAGES = {
  overview: [overviewFrame, overviewData],
  providers: [providersFrame, providersData],
  clients: [clientsFrame, clientsData],
  requests: [requestsFrame, requestsData],
  config: [configFrame, configData],
  storage: [storageFrame, storageData],
};

function renderFrame() {
  const [frame] = PAGES[state.page];
  document.getElementById("page").replaceChildren(...frame());
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    await PAGES[state.page][1]();
    stamp();
    showError(null);
  } catch (e) {
    if (e.status !== 401) showError(e);
  } finally {
    refreshing = false;
  }
}

async function signOut() {
  try { await api("POST", "/ui/logout"); } catch (_) { /* signed out either way */ }
  window.location.assign("/ui/login");
}

async function start() {
  const segment = window.location.pathname.split("/")[2] || "overview";
  state.page = PAGES[segment] ? segment : "overview";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === state.page) link.setAttribute("aria-current", "page");
  }
  document.getElementById("sign-out").addEventListener("click", signOut);
  try {
    state.session = await api("GET", "/ui/session");
  } catch (e) {
    return;
  }
  document.getElementById("who").textContent = state.session.id + " (" + state.session.role + ")";
  document.body.dataset.role = state.session.role;
  renderFrame();
  await refresh();
  document.body.dataset.ready = "true";
  state.timer = window.setInterval(refresh, REFRESH_MS);
}

start();
