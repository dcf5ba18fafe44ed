/**
 * Several daemons (replicas) on one store: membership and leases (membership.ts), who owns which server (ring.ts:
 * consistent hashing with bounded loads, by account), and the loops a replica runs for what it owns (owned-loops.ts).
 */
export {};
