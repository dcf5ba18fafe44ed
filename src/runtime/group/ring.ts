/**
 * Who owns which server: consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam; the model is Argo
 * CD's controller sharding). Each replica has VIRTUAL_NODES points on a ring; an account (host + user, lower case: one
 * account's servers stay on one replica, so a provider's per-account connection cap counts the whole group) goes to
 * the first replica clockwise from its own point whose load stays within LOAD_FACTOR × the average. Pure and
 * deterministic: every replica computes the same assignment from the same members and servers.
 */
import { createHash } from 'node:crypto';

export const VIRTUAL_NODES = 64;
/** No replica owns more than this times the average load (rounded up). */
export const LOAD_FACTOR = 1.25;

/** A 48-bit position on the ring. */
const point = (text: string): number => createHash('sha256').update(text).digest().readUIntBE(0, 6);

/** The account a server belongs to: its host and login user, lower case. */
export const accountOf = (spec: { host: string; auth: { user: string } }): string =>
  `${spec.host.toLowerCase()}\0${spec.auth.user.toLowerCase()}`;

/**
 * Owner per server id. `servers`: server id → account. Accounts are placed in the order of their own points (then
 * name), each weighing as many servers as it has, so the result does not depend on the order of `servers`.
 */
export function assign(members: readonly string[], servers: ReadonlyMap<string, string>): Map<string, string> {
  const owners = new Map<string, string>();
  if (!members.length) return owners;
  const ring = [...new Set(members)]
    .flatMap((m) => Array.from({ length: VIRTUAL_NODES }, (_, i) => ({ at: point(`${m}#${i}`), member: m })))
    .sort((a, b) => a.at - b.at || (a.member < b.member ? -1 : 1));
  const accounts = new Map<string, string[]>();
  for (const [id, account] of servers) accounts.set(account, [...(accounts.get(account) ?? []), id]);
  const placed = [...accounts.entries()]
    .map(([account, ids]) => ({ account, ids, at: point(account) }))
    .sort((a, b) => a.at - b.at || (a.account < b.account ? -1 : 1));
  const memberCount = new Set(members).size;
  const limit = Math.ceil((LOAD_FACTOR * servers.size) / memberCount);
  const load = new Map<string, number>();
  for (const { ids, at } of placed) {
    let start = ring.findIndex((p) => p.at >= at);
    if (start < 0) start = 0;
    let chosen: string | null = null;
    for (let i = 0; i < ring.length && chosen === null; i++) {
      const { member } = ring[(start + i) % ring.length]!;
      if ((load.get(member) ?? 0) + ids.length <= limit) chosen = member;
    }
    // an account larger than the bound goes to the least loaded replica
    chosen ??= [...new Set(members)].sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0))[0]!;
    load.set(chosen, (load.get(chosen) ?? 0) + ids.length);
    for (const id of ids) owners.set(id, chosen);
  }
  return owners;
}
