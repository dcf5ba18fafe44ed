/**
 * Pure routing of one inbound message through its email flow: glob matching (linear time, no regular expressions),
 * first matching route wins, auto-replies and bounces handled by the flow's `autoReplies` policy.
 */
import type { FlowSpec } from '../../config/model.js';

/**
 * Case-insensitive glob match: `*` any run of characters (also empty), `?` exactly one character, everything else
 * literal. Two pointers with a single backtrack point for the last `*`: O(pattern × text) in the worst case and no
 * catastrophic backtracking (a pattern like `*a*a*a*b` is fine on any input).
 */
export function globMatch(pattern: string, text: string): boolean {
  const p = pattern.toLowerCase();
  const t = text.toLowerCase();
  let pi = 0;
  let ti = 0;
  let star = -1; // index in p of the last '*' seen
  let mark = 0; // index in t the last '*' currently absorbs up to
  while (ti < t.length) {
    if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === t[ti]))) {
      pi++;
      ti++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      mark = ti;
    } else if (star !== -1) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

const anyGlob = (globs: string | readonly string[] | undefined, values: readonly string[]): boolean => {
  if (globs === undefined) return true;
  const list = typeof globs === 'string' ? [globs] : globs;
  return list.some((g) => values.some((v) => globMatch(g, v)));
};

/** The bytes up to the blank line that ends the header (a message's body is never decoded to a string). */
function headerBytes(raw: Uint8Array): Buffer {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const ends = [bytes.indexOf('\n\n'), bytes.indexOf('\n\r\n')].filter((i) => i >= 0);
  return ends.length ? bytes.subarray(0, Math.min(...ends) + 1) : bytes;
}

/** Header block → lower-case name → unfolded values (in order). Tolerates broken input: never throws. */
export function parseHeaders(raw: string | Uint8Array | undefined | null): Map<string, string[]> {
  const headers = new Map<string, string[]>();
  if (!raw) return headers;
  const text = typeof raw === 'string' ? raw : headerBytes(raw).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = end === -1 ? text : text.slice(0, end);
  let current: { name: string; value: string } | null = null;
  const flush = () => {
    if (!current) return;
    const list = headers.get(current.name) ?? [];
    list.push(current.value.trim());
    headers.set(current.name, list);
    current = null;
  };
  for (const line of block.split(/\r?\n/)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && current) {
      (current as { value: string }).value += ` ${line.trim()}`;
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    current = { name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1) };
  }
  flush();
  return headers;
}

/** What routing looks at. `to` holds the bare addresses of To and Cc. */
export interface MessageFacts {
  from: string[];
  to: string[];
  subject: string;
  headers: Map<string, string[]>;
}

const header = (headers: Map<string, string[]>, name: string): string[] => headers.get(name.toLowerCase()) ?? [];

/**
 * Auto-replies and bounces: `Auto-Submitted` other than `no`, any `X-Autoreply`, `Precedence: auto_reply|bulk|junk`,
 * or a delivery-status report (`multipart/report; report-type=delivery-status`).
 */
export function isAutoReply(headers: Map<string, string[]>): boolean {
  if (header(headers, 'auto-submitted').some((v) => v.split(';')[0]!.trim().toLowerCase() !== 'no')) return true;
  if (header(headers, 'x-autoreply').some((v) => v.trim() !== '')) return true;
  if (header(headers, 'precedence').some((v) => ['auto_reply', 'bulk', 'junk'].includes(v.trim().toLowerCase())))
    return true;
  return header(headers, 'content-type').some((v) => {
    const lower = v.toLowerCase();
    return /^\s*multipart\/report\b/.test(lower) && /report-type\s*=\s*"?delivery-status"?/.test(lower);
  });
}

export type RouteDecision =
  | { action: 'deliver'; queue: string; autoReply: boolean; route: number | 'autoReplies' }
  | { action: 'drop'; autoReply: true; reason: string }
  | { action: 'unrouted'; autoReply: boolean };

/** First matching route wins; every matcher given in a route's `when` must match. */
export function routeMessage(flow: Pick<FlowSpec, 'routes' | 'autoReplies'>, facts: MessageFacts): RouteDecision {
  const autoReply = isAutoReply(facts.headers);
  if (autoReply) {
    const policy = flow.autoReplies ?? 'deliver';
    if (policy === 'drop') return { action: 'drop', autoReply: true, reason: 'auto-reply' };
    if (typeof policy === 'object')
      return { action: 'deliver', queue: policy.queue, autoReply: true, route: 'autoReplies' };
  }
  for (const [i, route] of flow.routes.entries()) {
    const when = route.when;
    if (when) {
      if (!anyGlob(when.from, facts.from)) continue;
      if (!anyGlob(when.to, facts.to)) continue;
      if (!anyGlob(when.subject, [facts.subject])) continue;
      if (when.header && !anyGlob(when.header.value, header(facts.headers, when.header.name))) continue;
    }
    return { action: 'deliver', queue: route.queue, autoReply, route: i };
  }
  return { action: 'unrouted', autoReply };
}
