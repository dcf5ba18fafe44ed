/**
 * The read-only status page at `/` and the JSON it refreshes itself from, `/status.json`. Both are public (no token):
 * a browser cannot send the API token, the daemon listens on loopback unless `--allow-remote`, and neither carries
 * secrets — `/status.json` is a subset of `/v1/status` (no config folder, no diagnostics) and is scrubbed like the
 * logs. The page is one self-contained document (inline CSS and JS, no external assets) whose Content-Security-Policy
 * allows only its own script and style and fetches to the daemon; data is inserted with textContent only.
 */
import { createHash } from 'node:crypto';
import type { DaemonStatus, ServerStatus } from '../../api/status.js';

export interface PublicServerStatus {
  id: string;
  name: string;
  type: ServerStatus['type'];
  enabled: boolean;
  state: ServerStatus['state'];
  stale: boolean;
  since: string | null;
  lastSuccess: string | null;
  lastError: ServerStatus['lastError'];
  disabledReason: string | null;
  counters: Record<string, number>;
}

export interface PublicStatus {
  ready: boolean;
  draining: boolean;
  lastReconcile: { at: string; outcome: string } | null;
  servers: PublicServerStatus[];
}

export function publicStatus(status: DaemonStatus): PublicStatus {
  return {
    ready: status.ready,
    draining: status.draining,
    lastReconcile: status.lastReconcile && { at: status.lastReconcile.at, outcome: status.lastReconcile.outcome },
    servers: status.servers.map((s) => ({
      id: s.id,
      name: s.name,
      type: s.type,
      enabled: s.enabled,
      state: s.state,
      stale: s.stale,
      since: s.since,
      lastSuccess: s.lastSuccess,
      lastError: s.lastError,
      disabledReason: s.disabledReason,
      counters: s.counters,
    })),
  };
}

/** Seconds between refreshes of the page. */
export const REFRESH_SECONDS = 5;

const STYLE = `
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--dim:#57606a;--bg:#f6f8fa;--card:#fff;--line:#d0d7de}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:#1f2328}
header{padding:12px 16px;background:#24292f;color:#fff;display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline}
header h1{font-size:18px;margin:0}
#summary{font-weight:600}
#meta{color:#c9d1d9;font-size:13px}
#banner{display:none;margin:12px 16px;padding:8px 12px;border:1px solid var(--bad);background:#ffebe9;color:var(--bad);border-radius:6px}
main{padding:12px 16px;display:grid;gap:12px;grid-template-columns:repeat(auto-fill,minmax(min(100%,22rem),1fr))}
.server{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--ok);border-radius:6px;padding:10px 12px;min-width:0}
.server.failing{border-left-color:var(--bad);background:#fff8f7}
.server.idle{border-left-color:var(--dim)}
.server h2{font-size:16px;margin:0 0 2px;overflow-wrap:anywhere}
.id{color:var(--dim);font-size:13px;overflow-wrap:anywhere}
.state{display:inline-block;margin:6px 0;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:600;color:#fff;background:var(--ok)}
.failing .state{background:var(--bad)}
.idle .state{background:var(--dim)}
.stale{margin-left:6px;color:var(--warn);font-weight:600;font-size:13px}
dl{margin:4px 0 0;display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;font-size:14px}
dt{color:var(--dim)}
dd{margin:0;overflow-wrap:anywhere}
.error{color:var(--bad)}
.empty{color:var(--dim)}
`;

const SCRIPT = `
"use strict";
const REFRESH_MS = ${REFRESH_SECONDS * 1000};
const FAILING = new Set(["failed", "backoff"]);
const IDLE = new Set(["disabled", "stopped", "pending-approval"]);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const rel = s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : s < 86400 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " d ago";
  return rel + " (" + new Date(iso).toLocaleString() + ")";
}
function row(dl, label, value, cls) { dl.append(el("dt", "", label), el("dd", cls || "", value)); }
function card(s) {
  const failing = s.enabled && (FAILING.has(s.state) || s.stale);
  const c = el("section", "server" + (failing ? " failing" : IDLE.has(s.state) ? " idle" : ""));
  c.dataset.server = s.id;
  c.append(el("h2", "", s.name), el("div", "id", s.id + (failing ? " — failing" : "")));
  const state = el("div");
  state.append(el("span", "state", s.state));
  if (s.stale) state.append(el("span", "stale", "stale: no successful poll recently"));
  c.append(state);
  const dl = el("dl");
  row(dl, "Last success", ago(s.lastSuccess));
  if (s.lastError) row(dl, "Last error", s.lastError.class + ": " + s.lastError.message + " — " + ago(s.lastError.at), "error");
  else row(dl, "Last error", "none");
  if (s.disabledReason) row(dl, "Disabled", s.disabledReason);
  const counters = Object.entries(s.counters || {}).map(([k, v]) => k + " " + v).join(", ");
  row(dl, "Counters", counters || "none");
  c.append(dl);
  return c;
}
function render(st) {
  const main = document.getElementById("servers");
  const failing = st.servers.filter((s) => s.enabled && (FAILING.has(s.state) || s.stale)).length;
  document.getElementById("summary").textContent = st.servers.length + " server" + (st.servers.length === 1 ? "" : "s") + (failing ? ", " + failing + " failing" : ", all healthy");
  document.getElementById("meta").textContent = (st.draining ? "shutting down · " : st.ready ? "" : "starting · ") + "last reconcile: " + (st.lastReconcile ? st.lastReconcile.outcome + ", " + ago(st.lastReconcile.at) : "none") + " · updated " + new Date().toLocaleTimeString();
  document.title = (failing ? "(" + failing + " failing) " : "") + "mailctl status";
  main.replaceChildren(...(st.servers.length ? st.servers.map(card) : [el("p", "empty", "No servers are applied yet.")]));
}
async function refresh() {
  const banner = document.getElementById("banner");
  try {
    const res = await fetch("status.json", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
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

/** Only the page's own script and style, fetches to the daemon only. */
const CSP = `default-src 'none'; script-src ${sha256(SCRIPT)}; style-src ${sha256(STYLE)}; connect-src 'self'; base-uri 'none'; form-action 'none'`;
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
<noscript><p>This page needs JavaScript to load the status; the same data is at <a href="status.json">status.json</a>.</p></noscript>
<main id="servers" aria-live="polite"></main>
<script>${SCRIPT}</script>
</body>
</html>
`;
