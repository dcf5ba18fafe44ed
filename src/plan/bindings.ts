/**
 * Credential bindings, pure: where each secret reference (and each kept OAuth2 credential) was applied, and the rebinds
 * a plan asks approval for when a server would send one to a target it is not bound to.
 */
import type { ServerSpec } from '../config/model.js';
import { credentialOf, endpointsOf, grantOf } from '../config/oauth2.js';
import { parseSecretRef } from '../config/secret-ref.js';
import { canonicalJson } from './digest.js';
import type { CredentialBinding, ObservedState, Rebind, SecretIdentities } from './model.js';

type Target = Omit<CredentialBinding, 'boundBy'>;

/** A secret reference, or a kept credential's id (`kept`), and the target a server sends it to. */
export interface SecretTarget {
  reference: string;
  target: Target;
  /** The id of the credential the daemon may keep for the server: bound at apply like a reference. */
  kept?: true;
}

/**
 * Every secret reference a server sends, with the target it is sent to; and, for an OAuth2 refresh-token grant, the
 * id of the credential the daemon may keep for it (a signed-in or rotated refresh token), sent to the same target.
 */
export function secretTargets(spec: ServerSpec): SecretTarget[] {
  const base: Target = {
    host: spec.host.toLowerCase(),
    port: spec.port,
    tls: spec.tls,
    allowPlaintext: spec.allowPlaintext,
    ...(spec.tlsCaFile !== undefined && { tlsCaFile: spec.tlsCaFile }),
    ...(spec.type === 'imap' && spec.sniServerName !== undefined && { sniServerName: spec.sniServerName }),
  };
  if (spec.auth.type === 'basic') return [{ reference: spec.auth.password, target: base }];
  const { oauth2 } = spec.auth;
  const out: SecretTarget[] = [];
  if (oauth2.accessToken) out.push({ reference: oauth2.accessToken, target: base });
  // What goes to the token endpoint (and, to start a sign-in, to the device endpoint) is bound to them as well as to
  // the mail host; provider and tenant, as written, decide the endpoints a preset fills in.
  const grant = grantOf(oauth2);
  const { tokenUrl, deviceAuthorizationUrl } = endpointsOf(oauth2);
  const grantTarget: Target = {
    ...base,
    ...(tokenUrl !== undefined && { tokenUrl }),
    ...(grant === 'refresh_token' && deviceAuthorizationUrl !== undefined && { deviceAuthorizationUrl }),
    ...(oauth2.provider !== undefined && { provider: oauth2.provider }),
    ...(oauth2.tenant !== undefined && { tenant: oauth2.tenant }),
  };
  for (const ref of [oauth2.clientSecret, oauth2.clientCertificate, oauth2.clientKey, oauth2.refreshToken])
    if (ref && parseSecretRef(ref)) out.push({ reference: ref, target: grantTarget });
  const credential = credentialOf(spec);
  if (credential?.grant === 'refresh_token') out.push({ reference: credential.id, target: grantTarget, kept: true });
  return out;
}

const sameTarget = (a: Target, b: Target) =>
  a.host === b.host &&
  a.port === b.port &&
  a.tls === b.tls &&
  a.allowPlaintext === b.allowPlaintext &&
  (a.tokenUrl ?? '') === (b.tokenUrl ?? '') &&
  (a.deviceAuthorizationUrl ?? '') === (b.deviceAuthorizationUrl ?? '') &&
  (a.provider ?? '') === (b.provider ?? '') &&
  (a.tenant ?? '') === (b.tenant ?? '') &&
  (a.tlsCaFile ?? '') === (b.tlsCaFile ?? '') &&
  (a.sniServerName ?? '') === (b.sniServerName ?? '');

function describeTarget(t: Target): string {
  const security = t.tls ? 'TLS' : t.allowPlaintext ? 'plaintext allowed' : 'STARTTLS';
  const checks = [t.tlsCaFile && `CA file ${t.tlsCaFile}`, t.sniServerName && `SNI ${t.sniServerName}`].filter(Boolean);
  const provider = t.provider ? ` (${[t.provider, t.tenant].filter(Boolean).join(' ')})` : '';
  const tokenUrl = t.tokenUrl ? ` and ${t.tokenUrl}${provider}` : '';
  return `${t.host}:${t.port} (${[security, ...checks].join(', ')})${tokenUrl}`;
}

/** The reason a rebind gives in a plan. */
export function rebindReason(r: Rebind): string {
  const what = r.reference.startsWith('oauth2/')
    ? `the kept credential ${r.reference}${r.movesTo ? ` (kept as ${r.movesTo} at the new token URL)` : ''} was`
    : `${r.reference} ${r.byIdentity ? 'holds the same secret as a reference' : 'was'}`;
  return (
    `credential rebind: ${what} applied with ${describeTarget(r.from)} (by ${r.from.boundBy}) and would now be ` +
    `sent to ${describeTarget(r.to)}`
  );
}

/**
 * Secret references that an enabled server would send to a target they are not bound to: by the reference, and (in
 * the daemon) by the identity of the value it holds, which catches a bound secret under a reference nobody bound.
 */
function findRebinds(
  id: string,
  spec: ServerSpec,
  bindings: ObservedState['bindings'],
  identities: SecretIdentities | undefined,
): Rebind[] {
  if (!spec.enabled) return [];
  const seen = new Set<string>();
  return secretTargets(spec).flatMap(({ reference, target }) => {
    // One entry per reference and target: clientSecret and refreshToken may share a reference.
    const key = `${reference}\u0000${canonicalJson(target)}`;
    if (seen.has(key)) return [];
    const unbound = (bound: readonly CredentialBinding[]) =>
      bound.length > 0 && !bound.some((b) => sameTarget(b, target));
    const byReference = bindings[reference] ?? [];
    const identity = identities?.ofReference[reference];
    const byIdentity = (identity !== undefined && identities?.bindings[identity]) || [];
    const rebind: Rebind | null = unbound(byReference)
      ? { reference, from: byReference.find((b) => b.boundBy === id) ?? byReference[0]!, to: target }
      : unbound(byIdentity)
        ? { reference, from: byIdentity.find((b) => b.boundBy === id) ?? byIdentity[0]!, to: target, byIdentity: true }
        : null;
    if (!rebind) return [];
    seen.add(key);
    return [rebind];
  });
}

/**
 * A kept credential that would follow its server to another token URL (or provider, tenant): the credential id
 * includes the token URL, so the server's new id differs while the credential is the same (same refresh-token
 * reference or sign-in, same client id). What the daemon kept moves to the new id when the change is applied; unless
 * the new id is bound to the new target already, that sends it to an endpoint nobody approved for it: a rebind.
 */
function keptMove(
  id: string,
  before: ServerSpec,
  after: ServerSpec,
  bindings: ObservedState['bindings'],
): Rebind | null {
  if (!after.enabled) return null;
  const from = credentialOf(before);
  const to = credentialOf(after);
  if (!from || !to || from.id === to.id || from.lineage !== to.lineage || to.grant !== 'refresh_token') return null;
  const bound = bindings[from.id] ?? [];
  const target = secretTargets(after).find((t) => t.kept)!.target;
  if (bound.length === 0 || bindings[to.id]?.some((b) => sameTarget(b, target))) return null;
  return { reference: from.id, from: bound.find((b) => b.boundBy === id) ?? bound[0]!, to: target, movesTo: to.id };
}

/**
 * The rebinds of a change that connects a server (creates, starts or restarts it): each secret it would send to a
 * target the secret is not bound to, and its kept credential when that moves to another token URL.
 */
export function rebindsOf(
  id: string,
  before: ServerSpec | undefined,
  after: ServerSpec,
  bindings: ObservedState['bindings'],
  identities: SecretIdentities | undefined,
): Rebind[] {
  const rebinds = findRebinds(id, after, bindings, identities);
  const moved = before && keptMove(id, before, after, bindings);
  if (moved) rebinds.push(moved);
  return rebinds;
}

/**
 * The credential bindings after an apply: every earlier binding is kept (also after its server is deleted, so a later
 * server cannot reuse the reference elsewhere unnoticed), and the targets of servers applied in this round are added.
 * Bindings are kept by reference, or by whatever `keyOf` makes of a reference (the identity of its value; a reference
 * without one adds nothing).
 */
export function nextBindings(
  previous: ObservedState['bindings'],
  servers: ObservedState['servers'],
  appliedNow: ReadonlySet<string>,
  keyOf: (reference: string) => string | undefined = (reference) => reference,
): ObservedState['bindings'] {
  const next: ObservedState['bindings'] = Object.fromEntries(
    Object.entries(previous).map(([ref, list]) => [ref, [...list]]),
  );
  for (const [id, server] of Object.entries(servers).sort(([a], [b]) => (a < b ? -1 : 1))) {
    // A disabled server adds no binding: it sends nothing and its plan never checks for a rebind, so binding its
    // targets would let it be enabled later (a `start`) against a target nobody approved.
    if (!appliedNow.has(id) || !server.config.spec.enabled) continue;
    for (const { reference, target } of secretTargets(server.config.spec)) {
      const key = keyOf(reference);
      if (key === undefined) continue;
      const list = (next[key] ??= []);
      if (!list.some((b) => sameTarget(b, target))) list.push({ ...target, boundBy: id });
    }
  }
  return next;
}

/**
 * Bindings made before the CA file and the SNI name were part of a target: each takes them from the server that made
 * it when that server still runs with the binding's host, port, TLS settings and token URL (what was approved then).
 */
export function completeLegacyBindings(state: ObservedState): ObservedState['bindings'] {
  const complete = (binding: CredentialBinding): CredentialBinding => {
    const spec = state.servers[binding.boundBy]?.config.spec;
    const now =
      spec &&
      secretTargets(spec).find(({ target }) =>
        sameTarget({ ...target, tlsCaFile: undefined, sniServerName: undefined }, binding),
      );
    return now ? { ...now.target, boundBy: binding.boundBy } : binding;
  };
  return Object.fromEntries(Object.entries(state.bindings).map(([ref, list]) => [ref, list.map(complete)]));
}

/**
 * Identity bindings made from reference bindings: each reference's targets, under the identity of the value it holds.
 */
export function identityBindingsOf(
  bindings: ObservedState['bindings'],
  ofReference: Readonly<Record<string, string>>,
): ObservedState['bindings'] {
  const out: ObservedState['bindings'] = {};
  for (const [reference, list] of Object.entries(bindings).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const identity = ofReference[reference];
    if (identity === undefined) continue;
    const merged = (out[identity] ??= []);
    for (const binding of list) if (!merged.some((b) => sameTarget(b, binding))) merged.push(binding);
  }
  return out;
}
