/**
 * Several daemons (replicas) on one store: membership and leases (replica.ts), who owns which server (ring.ts:
 * consistent hashing with bounded loads, by account), getting ready for a silent member's mailboxes (takeover.ts),
 * the daemon's group wiring (daemon.ts) and requests forwarded to the replica that acts on them (forward.ts).
 */
export {};
