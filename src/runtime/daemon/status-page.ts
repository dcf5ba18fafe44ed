/**
 * The read-only status page at `/` and the JSON it refreshes itself from, `/status.json`. Both are public (no token):
 * a browser cannot send the API token, the daemon listens on loopback unless `--allow-remote`, and neither carries
 * secrets — `/status.json` is a subset of `/v1/status` (no config folder, no diagnostics) and is scrubbed like the
 * logs. The page is one self-contained document (inline CSS and JS, no external assets) whose Content-Security-Policy
 * allows only its own script and style and fetches to the daemon; data is inserted with textContent only.
 *
 * Built for a thousand servers: a summary bar of counts by state (each a filter), a search box, a compact sortable
 * table with the servers that need attention first, and a small chart of each server's last hour. A replica of a
 * group lists the group's replicas above it and names each server's owner.
 */
import { createHash } from 'node:crypto';
import type { CredentialStatus } from '../../api/credentials.js';
import type { DaemonStatus, ReplicaStatus, ServerStatus } from '../../api/status.js';

export interface PublicServerStatus {
  id: string;
  name: string;
  type: ServerStatus['type'];
  host: string;
  enabled: boolean;
  state: ServerStatus['state'];
  stale: boolean;
  since: string | null;
  lastSuccess: string | null;
  lastError: ServerStatus['lastError'];
  disabledReason: string | null;
  counters: Record<string, number>;
  /** Deliveries (IMAP) or sends (SMTP) in the last hour: `[minutes ago, count]` for the minutes that had any. */
  lastHour: [number, number][];
  /** Its OAuth2 credential, as `mailctl auth status` shows it. */
  credential: CredentialStatus | null;
  /** In a group: the replica holding its lease (null: none now) and the lease's epoch. */
  owner?: string | null;
  epoch?: number | null;
}

/** A replica of the group as the page lists it (no addresses). */
export type PublicReplica = Pick<
  ReplicaStatus,
  'id' | 'live' | 'heartbeatAgeS' | 'loopsOwned' | 'reconciler' | 'generation' | 'drift'
>;

export interface PublicStatus {
  ready: boolean;
  draining: boolean;
  /** While the store does not answer, the loops look fine and nothing moves: the page says so. */
  store: { kind: DaemonStatus['store']['kind']; available: boolean };
  lastReconcile: { at: string; outcome: string } | null;
  servers: PublicServerStatus[];
  /** In a group: the replica that answered, and every replica. */
  group?: { replica: string; replicas: PublicReplica[] };
}

export function publicStatus(status: DaemonStatus, lastHour: (server: string) => [number, number][]): PublicStatus {
  return {
    ready: status.ready,
    draining: status.draining,
    store: { kind: status.store.kind, available: status.store.available },
    lastReconcile: status.lastReconcile && { at: status.lastReconcile.at, outcome: status.lastReconcile.outcome },
    servers: status.servers.map((s) => ({
      id: s.id,
      name: s.name,
      type: s.type,
      host: s.host,
      enabled: s.enabled,
      state: s.state,
      stale: s.stale,
      since: s.since,
      lastSuccess: s.lastSuccess,
      lastError: s.lastError,
      disabledReason: s.disabledReason,
      counters: s.counters,
      lastHour: lastHour(s.id),
      credential: status.credentials.find((c) => c.id === s.credential) ?? null,
      ...(s.owner !== undefined && { owner: s.owner, epoch: s.epoch ?? null }),
    })),
    ...(status.group && {
      group: {
        replica: status.group.replica,
        replicas: status.group.replicas.map((r) => ({
          id: r.id,
          live: r.live,
          heartbeatAgeS: r.heartbeatAgeS,
          loopsOwned: r.loopsOwned,
          reconciler: r.reconciler,
          generation: r.generation,
          drift: r.drift,
        })),
      },
    }),
  };
}

/** Seconds between refreshes of the page. */
export const REFRESH_SECONDS = 5;

const STYLE = `
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--dim:#57606a;--bg:#f6f8fa;--card:#fff;--line:#d0d7de;--sel:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:#1f2328}
header{padding:10px 16px;background:#24292f;color:#fff;display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline}
header h1{font-size:18px;margin:0}
#summary{font-weight:600}
#meta{color:#c9d1d9;font-size:13px}
#banner{display:none;margin:10px 16px;padding:8px 12px;border:1px solid var(--bad);background:#ffebe9;color:var(--bad);
 border-radius:6px}
#tools{display:flex;flex-wrap:wrap;gap:6px 8px;align-items:center;padding:10px 16px 4px}
#filters{display:flex;flex-wrap:wrap;gap:6px}
#filters button{font:inherit;font-size:13px;padding:3px 10px;border:1px solid var(--line);border-radius:14px;
 background:var(--card);cursor:pointer}
#filters button[aria-pressed=true]{border-color:var(--sel);box-shadow:inset 0 0 0 1px var(--sel);font-weight:600}
#filters button.failing{color:var(--bad)}
#search{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px;min-width:0;flex:1 1 14rem;
 max-width:28rem}
#shown{color:var(--dim);font-size:13px}
main{padding:4px 16px 16px}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);table-layout:fixed}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{position:sticky;top:0;background:#eaeef2;font-size:13px;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" ▲"}
th[aria-sort=descending]::after{content:" ▼"}
col.c-state{width:9rem}col.c-host{width:14rem}col.c-success{width:8rem}col.c-hour{width:8.5rem}
#group{margin-bottom:12px}
#group h2{font-size:15px;margin:6px 0}
#group th{cursor:default}
tr.replica.gone{color:var(--dim)}
.drift{color:var(--warn);font-weight:600}
tr.server{cursor:pointer;border-left:4px solid var(--ok)}
tr.server.failing{border-left-color:var(--bad);background:#fff8f7}
tr.server.idle{border-left-color:var(--dim);color:var(--dim)}
.state{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff;
 background:var(--ok)}
.failing .state{background:var(--bad)}
.idle .state{background:var(--dim)}
.stale{display:block;color:var(--warn);font-weight:600;font-size:12px}
.id{display:block;color:var(--dim);font-size:12px}
.error{color:var(--bad)}
svg.hour{display:block;width:120px;height:18px}
svg.hour rect{fill:var(--ok)}
tr.detail td{background:#fafbfc;font-size:13px}
tr.detail dl{margin:0;display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
tr.detail dt{color:var(--dim)}
tr.detail dd{margin:0}
.empty{color:var(--dim);padding:12px}
@media (max-width:700px){
 col.c-host,col.c-hour,th.c-host,td.c-host,th.c-hour,td.c-hour{display:none}
 col.c-state{width:6.5rem}col.c-success{width:5.5rem}
 th,td{padding:4px 5px}
}
`;

const SCRIPT = `
"use strict";
const REFRESH_MS = ${REFRESH_SECONDS * 1000};
const FAILING = new Set(["failed", "backoff", "needs-login"]);
const IDLE = new Set(["disabled", "stopped", "pending-approval"]);
const LABELS = { failing: "Failing", stale: "Stale", running: "Running", starting: "Starting", backoff: "Backoff",
  failed: "Failed", "needs-login": "Needs sign-in", "pending-approval": "Pending approval", stopped: "Stopped",
  disabled: "Disabled" };
const view = { filter: "all", search: "", sort: null, dir: 1, open: new Set() };
let last = null;
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const failing = (s) => s.enabled && (FAILING.has(s.state) || s.stale);
/** Attention order: failing and stale first, then starting and pending, then the rest. */
const rank = (s) =>
  failing(s) ? 0 : s.state === "starting" || s.state === "pending-approval" ? 1 : IDLE.has(s.state) ? 3 : 2;
function ago(iso, short) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const rel = seconds(s);
  return short ? rel : rel + " (" + new Date(iso).toLocaleString() + ")";
}
function seconds(s) {
  return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" :
    s < 86400 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " d ago";
}
const matches = (s, f) => f === "all" || (f === "failing" ? failing(s) : f === "stale" ? s.stale : s.state === f);
const KEYS = { state: (s) => rank(s) * 100 + Object.keys(LABELS).indexOf(s.state), server: (s) => s.id,
  host: (s) => s.host,
  success: (s) => s.lastSuccess || "", error: (s) => s.lastError ? s.lastError.class + s.lastError.message : "",
  hour: (s) => s.lastHour.reduce((n, m) => n + m[1], 0) };
function ordered(servers) {
  const key = view.sort && KEYS[view.sort];
  return servers.slice().sort((a, b) => {
    if (key) { const x = key(a), y = key(b); if (x < y) return -view.dir; if (x > y) return view.dir; }
    return rank(a) - rank(b) || (a.id < b.id ? -1 : 1);
  });
}
const SVG = "http://www.w3.org/2000/svg";
function chart(s) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "hour");
  svg.setAttribute("viewBox", "0 0 120 18");
  const total = s.lastHour.reduce((n, m) => n + m[1], 0);
  const max = Math.max(1, ...s.lastHour.map((m) => m[1]));
  for (const [agoMin, n] of s.lastHour) {
    const r = document.createElementNS(SVG, "rect");
    const h = Math.max(1, Math.round((n / max) * 18));
    r.setAttribute("x", String((59 - agoMin) * 2));
    r.setAttribute("y", String(18 - h));
    r.setAttribute("width", "2");
    r.setAttribute("height", String(h));
    svg.append(r);
  }
  const title = document.createElementNS(SVG, "title");
  title.textContent = total + (s.type === "imap" ? " delivered" : " sent") + " in the last hour";
  svg.append(title);
  return svg;
}
function row(s) {
  const tr = el("tr", "server" + (failing(s) ? " failing" : IDLE.has(s.state) ? " idle" : ""));
  tr.dataset.server = s.id;
  const state = el("td", "c-state");
  state.append(el("span", "state", s.state));
  if (s.stale) state.append(el("span", "stale", "stale"));
  const server = el("td", "c-server");
  const on = s.owner === undefined ? "" : s.owner ? " · on " + s.owner : " · no owner now";
  server.append(el("span", "name", s.name), el("span", "id", s.id + on + (failing(s) ? " — failing" : "")));
  const hour = el("td", "c-hour");
  hour.append(chart(s));
  const err = s.lastError ? s.lastError.class + ": " + s.lastError.message : s.disabledReason || "none";
  tr.append(state, server, el("td", "c-host", s.host), el("td", "c-success", ago(s.lastSuccess, true)),
    el("td", "c-error" + (s.lastError ? " error" : ""), err), hour);
  return tr;
}
function detail(s) {
  const tr = el("tr", "detail");
  tr.dataset.detail = s.id;
  const td = el("td");
  td.colSpan = 6;
  const dl = el("dl");
  const add = (k, v, cls) => dl.append(el("dt", "", k), el("dd", cls || "", v));
  add("State", s.state + (s.since ? " since " + ago(s.since) : ""));
  add("Last success", ago(s.lastSuccess));
  const e = s.lastError;
  add("Last error", e ? e.class + ": " + e.message + " — " + ago(e.at) : "none", e ? "error" : "");
  if (s.disabledReason) add("Disabled", s.disabledReason);
  if (s.owner !== undefined)
    add("Owner", s.owner ? s.owner + " (lease epoch " + s.epoch + ")" : "no replica holds its lease now");
  const c = s.credential;
  if (c) {
    const login = c.needsLogin ? ": needs sign-in, run mailctl auth login " + s.id : "";
    add("OAuth2", c.id + " (" + c.grant + login + ")", c.needsLogin ? "error" : "");
    const r = c.refreshToken;
    add("Token", "refreshed " + ago(c.lastRefresh) +
      (c.accessTokenExpires ? ", valid until " + new Date(c.accessTokenExpires).toLocaleString() : "") +
      (r ? "; refresh token from " + r.source : "") +
      (r && r.since ? ", " + ago(r.since, true).replace(" ago", " old") : ""));
    const ce = c.lastError;
    if (ce)
      add("Token error", (ce.providerCode ? ce.providerCode + ": " : "") + ce.message + " — " + ago(ce.at), "error");
  }
  add("Counters", Object.entries(s.counters || {}).map(([k, v]) => k + " " + v).join(", ") || "none");
  td.append(dl);
  tr.append(td);
  return tr;
}
function renderFilters(servers) {
  const counts = { all: servers.length, failing: 0, stale: 0 };
  for (const s of servers) {
    counts[s.state] = (counts[s.state] || 0) + 1;
    if (failing(s)) counts.failing++;
    if (s.stale) counts.stale++;
  }
  const box = document.getElementById("filters");
  const buttons = [["all", "All"], ...Object.entries(LABELS)].filter(([f]) => f === "all" || counts[f])
    .map(([f, label]) => {
      const b = el("button", f === "failing" ? "failing" : "", label + " " + counts[f]);
      b.type = "button";
      b.dataset.filter = f;
      b.setAttribute("aria-pressed", String(view.filter === f));
      return b;
    });
  box.replaceChildren(...buttons);
  return counts;
}
/** A group's replicas: one row each (hidden for a daemon alone). */
function renderReplicas(group) {
  document.getElementById("group").hidden = !group;
  if (!group) return;
  document.getElementById("group-title").textContent = "Replicas (this page from " + group.replica + ")";
  const rows = group.replicas.map((r) => {
    const tr = el("tr", "replica" + (r.live ? "" : " gone"));
    tr.dataset.replica = r.id;
    const drift = r.drift
      ? "config-drift: runs the applied generation " + r.generation + ", its folder differs" : "none";
    tr.append(el("td", "", r.id), el("td", "", r.live ? "live" : "gone"),
      el("td", "", seconds(Math.round(r.heartbeatAgeS))), el("td", "", String(r.loopsOwned)),
      el("td", "", r.reconciler ? "yes" : "no"), el("td", r.drift ? "drift" : "", drift));
    return tr;
  });
  document.getElementById("replicas").replaceChildren(...rows);
}
function render() {
  if (!last) return;
  const started = performance.now();
  const st = last;
  renderReplicas(st.group);
  const counts = renderFilters(st.servers);
  const q = view.search.trim().toLowerCase();
  const found = (s) => [s.name, s.id, s.host, s.state, s.owner].some((v) => String(v).toLowerCase().includes(q));
  const shown = ordered(st.servers.filter((s) => matches(s, view.filter) && (!q || found(s))));
  const body = document.createDocumentFragment();
  for (const s of shown) { body.append(row(s)); if (view.open.has(s.id)) body.append(detail(s)); }
  const tbody = document.getElementById("servers");
  tbody.replaceChildren(body);
  document.getElementById("empty").hidden = shown.length > 0;
  const total = st.servers.length;
  document.getElementById("empty").textContent = total ? "No server matches." : "No servers are applied yet.";
  document.getElementById("shown").textContent = shown.length === total ? "" : shown.length + " of " + total + " shown";
  document.getElementById("summary").textContent = total + " server" + (total === 1 ? "" : "s") +
    (counts.failing ? ", " + counts.failing + " failing" : ", all healthy");
  const reconciled = st.lastReconcile ? st.lastReconcile.outcome + ", " + ago(st.lastReconcile.at) : "none";
  document.getElementById("meta").textContent = (st.store.available ? "" : "store unavailable: no mail moves · ") +
    (st.draining ? "shutting down · " : st.ready ? "" : "starting · ") + "last reconcile: " + reconciled +
    " · updated " + new Date().toLocaleTimeString();
  document.title = (counts.failing ? "(" + counts.failing + " failing) " : "") + "mailctl status";
  for (const th of document.querySelectorAll("th[data-sort]"))
    th.setAttribute("aria-sort", th.dataset.sort === view.sort ? (view.dir > 0 ? "ascending" : "descending") : "none");
  window.mailctlDrawMs = performance.now() - started;
}
document.getElementById("filters").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-filter]");
  if (!b) return;
  view.filter = b.dataset.filter;
  render();
});
document.getElementById("search").addEventListener("input", (e) => { view.search = e.target.value; render(); });
document.getElementById("servers-head").addEventListener("click", (e) => {
  const th = e.target.closest("th[data-sort]");
  if (!th) return;
  view.dir = view.sort === th.dataset.sort ? -view.dir : 1;
  view.sort = th.dataset.sort;
  render();
});
document.getElementById("servers").addEventListener("click", (e) => {
  const tr = e.target.closest("tr.server");
  if (!tr) return;
  const id = tr.dataset.server;
  if (view.open.has(id)) view.open.delete(id); else view.open.add(id);
  render();
});
async function refresh() {
  const banner = document.getElementById("banner");
  try {
    // a request that hangs (a proxy, a lost packet) must not stop the refreshing: it gives up after one interval
    const res = await fetch("status.json", { cache: "no-store", signal: AbortSignal.timeout(REFRESH_MS) });
    if (!res.ok) throw new Error("HTTP " + res.status);
    last = await res.json();
    render();
    banner.style.display = "none";
  } catch (err) {
    banner.textContent = "The daemon did not answer (" + err.message + "); showing the last data received.";
    banner.style.display = "block";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** The page's Content-Security-Policy: its own inline script and style (by hash), fetches to the daemon only. */
const CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');
/** Sent as a header too, where it also keeps other sites from framing the page (a meta tag cannot). */
export const STATUS_PAGE_CSP = `${CSP}; frame-ancestors 'none'`;

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<title>mailctl status</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>mailctl</h1><span id="summary">loading…</span><span id="meta"></span></header>
<div id="banner" role="alert"></div>
<noscript><p>This page needs JavaScript to load the status; the same data is at
<a href="status.json">status.json</a>.</p></noscript>
<div id="tools">
<div id="filters" role="group" aria-label="Show servers by state"></div>
<input id="search" type="search" placeholder="Search name, type/shortName, host, state" aria-label="Search servers">
<span id="shown"></span>
</div>
<main>
<section id="group" hidden>
<h2 id="group-title">Replicas</h2>
<table>
<thead><tr><th>Replica</th><th>Live</th><th>Heartbeat</th><th>Loops owned</th><th>Reconciler</th><th>Drift</th>
</tr></thead>
<tbody id="replicas"></tbody>
</table>
</section>
<table>
<colgroup><col class="c-state"><col class="c-server"><col class="c-host"><col class="c-success"><col class="c-error">
<col class="c-hour"></colgroup>
<thead id="servers-head"><tr><th data-sort="state" class="c-state">State</th>
<th data-sort="server" class="c-server">Server</th><th data-sort="host" class="c-host">Host</th>
<th data-sort="success" class="c-success">Last success</th><th data-sort="error" class="c-error">Last error</th>
<th data-sort="hour" class="c-hour">Last hour</th></tr></thead>
<tbody id="servers" aria-live="polite"></tbody>
</table>
<p id="empty" class="empty" hidden></p>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
