/**
 * What an apply does to the daemon's OAuth2 credentials: which servers it reauthenticates (their cached access tokens
 * discarded first), and the move of a kept credential whose id changes with its token URL.
 */
import type { ApplyRequest } from '../../api/index.js';
import type { SecretResolver } from '../../connect/secrets.js';
import { verifyAll, type CheckedServer } from '../../connect/verify.js';
import type { ServerSpec } from '../../config/model.js';
import { credentialOf, type OAuth2CredentialRef } from '../../config/oauth2.js';
import type { DesiredState, Plan } from '../../plan/model.js';
import { startsLoop } from '../../plan/policy.js';

/** What a reconcile does to OAuth2 credentials. */
export interface ReconcilerCredentials {
  /** Discards the cached access token: the next login gets a fresh one. */
  invalidate(id: string): void;
  /** Moves a kept credential to its server's new id (an approved rebind to a new token URL). */
  move(from: string, to: OAuth2CredentialRef): Promise<boolean>;
}

/**
 * The OAuth2 servers to reauthenticate: those asked for (`apply --reauthenticate`) and the changed ones with
 * `reauthenticateOnSave`; or why the request names a server that cannot be.
 */
export function reauthenticateOf(
  request: ApplyRequest,
  desired: DesiredState,
  plan: Plan,
): { id: string; spec: ServerSpec }[] | string {
  const out: { id: string; spec: ServerSpec }[] = [];
  for (const id of request.reauthenticate ?? []) {
    const spec = desired.servers[id]?.spec;
    if (!spec?.enabled || !credentialOf(spec))
      return `--reauthenticate ${id}: the folder has no enabled server ${id} with an OAuth2 grant; nothing changed`;
    out.push({ id, spec });
  }
  for (const change of plan.changes) {
    const spec = change.after?.spec;
    if (spec?.enabled && spec.reauthenticateOnSave && credentialOf(spec) && !out.some((r) => r.id === change.id))
      out.push({ id: change.id, spec });
  }
  return out;
}

/** Discards the cached access tokens of `servers`' credentials (each once). */
export function invalidateTokens(
  credentials: ReconcilerCredentials | undefined,
  servers: readonly { spec: ServerSpec }[],
): void {
  const ids = new Set(servers.map((s) => credentialOf(s.spec)!.id));
  for (const id of ids) credentials?.invalidate(id);
}

/** Verifies `servers` with fresh access tokens (no change applied). */
export function reauthenticated(
  credentials: ReconcilerCredentials | undefined,
  servers: readonly { id: string; spec: ServerSpec }[],
  resolver: SecretResolver,
): Promise<CheckedServer[]> {
  invalidateTokens(credentials, servers);
  return verifyAll(servers, resolver);
}

/**
 * Moves what the daemon kept for a server whose credential id changes with its token URL (the same refresh token or
 * sign-in and client id) to the new id, before the server is verified; the plan made it a rebind where that needs
 * approval. Kept where another server of the folder still uses the old id.
 */
export async function moveKept(
  credentials: ReconcilerCredentials | undefined,
  plan: Plan,
  desired: DesiredState,
): Promise<void> {
  const inUse = new Set(
    Object.values(desired.servers).flatMap((s) => (s.spec.enabled ? [credentialOf(s.spec)?.id] : [])),
  );
  for (const change of plan.changes.filter(startsLoop)) {
    const from = change.before && credentialOf(change.before.spec);
    const to = credentialOf(change.after!.spec);
    if (from && to && from.id !== to.id && from.lineage === to.lineage && !inUse.has(from.id))
      await credentials?.move(from.id, to);
  }
}
