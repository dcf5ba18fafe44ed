/**
 * Pure planning: desired folder + observed running state → Plan. No file system, no network, no clock.
 * Level-based: every call recomputes the whole difference; nothing depends on which event triggered it.
 */
import type { FlowSpec, ServerSpec } from '../config/model.js';
import { credentialOf, endpointsOf, grantOf } from '../config/oauth2.js';
import { parseSecretRef } from '../config/secret-ref.js';
import { canonicalJson, digestOf } from './digest.js';
import {
  effectiveAction,
  PLAN_FORMAT_VERSION,
  type CredentialBinding,
  type DesiredState,
  type ObservedState,
  type Plan,
  type PlanSummary,
  type Rebind,
  type SecretDigests,
  type SecretIdentities,
  type ServerChange,
  type ServerConfig,
} from './model.js';

/**
 * Fields whose change needs a new connection (verified before the old loop is replaced). Everything else reaches
 * the running loop in place. `auth` covers every auth field, including the secret references.
 */
export const RESTART_FIELDS = new Set([
  'host',
  'port',
  'tls',
  'allowPlaintext',
  'tlsCaFile',
  'auth',
  'folder',
  'storageFolder',
  'sniServerName',
  'disableCompression',
]);

export interface PlanInputs {
  desired: DesiredState;
  observed: ObservedState;
  /** Identities whose credential rebind the caller approved (`--approve-rebind`). */
  approvals?: readonly string[];
  secretDigests?: SecretDigests;
  identities?: SecretIdentities;
}

export const desiredDigest = (desired: DesiredState): string => digestOf(desired.servers);
/** Covers what a plan depends on: running configurations, their status, and the credential bindings. */
export const stateDigest = (observed: ObservedState): string =>
  digestOf({ servers: observed.servers, bindings: observed.bindings });

/** Dotted paths of the fields that differ between two configs (one level into `auth` and the flow). */
export function changedFields(before: ServerConfig, after: ServerConfig): string[] {
  const fields: string[] = [];
  const specKeys = new Set([...Object.keys(before.spec), ...Object.keys(after.spec)]);
  for (const key of [...specKeys].sort()) {
    const a = (before.spec as unknown as Record<string, unknown>)[key];
    const b = (after.spec as unknown as Record<string, unknown>)[key];
    if (canonicalJson(a) === canonicalJson(b)) continue;
    if (key === 'auth') fields.push(...nestedDifferences('auth', a, b));
    else fields.push(key);
  }
  if (before.spec.type === 'imap' && canonicalJson(before.flow) !== canonicalJson(after.flow)) {
    fields.push(...nestedDifferences('flow', before.flow, after.flow).filter((f) => !fields.includes(f)));
  }
  return fields;
}

function nestedDifferences(prefix: string, a: unknown, b: unknown): string[] {
  if (!isRecord(a) || !isRecord(b)) return [prefix];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys
    .filter((k) => canonicalJson(a[k]) !== canonicalJson(b[k]))
    .flatMap((k) =>
      prefix === 'auth' && k === 'oauth2' ? nestedDifferences(`${prefix}.${k}`, a[k], b[k]) : [`${prefix}.${k}`],
    );
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const topField = (path: string) => path.split('.')[0]!;

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
function rebindReason(r: Rebind): string {
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

function changeOf(
  id: string,
  before: ServerConfig | undefined,
  after: ServerConfig | undefined,
  observedStatus: 'active' | 'disabled' | undefined,
  secretChanged: boolean,
): Omit<ServerChange, 'rebinds'> {
  if (!after) {
    return {
      id,
      action: 'delete',
      before: before!,
      changedFields: [],
      restartFields: [],
      reasons: ['removed from the folder: its loop stops and its running configuration is forgotten'],
    };
  }
  if (!before) {
    return {
      id,
      action: 'create',
      after,
      changedFields: [],
      restartFields: [],
      reasons: [
        after.spec.enabled
          ? 'new server: verified, then its loop starts'
          : 'new server, saved as disabled (enabled: false)',
      ],
    };
  }
  const fields = changedFields(before, after);
  const restartFields = fields.filter((f) => RESTART_FIELDS.has(topField(f)));
  if (secretChanged && !restartFields.includes('secret value')) restartFields.push('secret value');
  const base = { id, before, after, changedFields: fields.filter((f) => f !== 'enabled'), restartFields };
  if (observedStatus === 'active' && !after.spec.enabled)
    return {
      ...base,
      action: 'stop',
      restartFields: [],
      reasons: ['enabled: false: the loop stops; its configuration is kept'],
    };
  if (observedStatus === 'disabled' && after.spec.enabled)
    return { ...base, action: 'start', reasons: ['enabled again: verified, then its loop starts'] };
  if (!after.spec.enabled) {
    return {
      ...base,
      action: base.changedFields.length ? 'update' : 'no-op',
      restartFields: [],
      reasons: ['disabled: the configuration is recorded, nothing runs'],
    };
  }
  if (restartFields.length) {
    return {
      ...base,
      action: 'restart',
      reasons: [
        `${restartFields.join(', ')} ${restartFields.length === 1 ? 'forces' : 'force'} a new connection: ` +
          'verified, then the loop restarts',
      ],
    };
  }
  if (base.changedFields.length)
    return { ...base, action: 'update', reasons: ['updated in place: the loop keeps its connection'] };
  return { ...base, action: 'no-op', reasons: [] };
}

export function computePlan(inputs: PlanInputs): Plan {
  const { desired, observed } = inputs;
  const approvals = new Set(inputs.approvals ?? []);
  const ids = [...new Set([...Object.keys(desired.servers), ...Object.keys(observed.servers)])].sort();
  const changes: ServerChange[] = [];
  const unchanged: string[] = [];
  for (const id of ids) {
    const observedServer = observed.servers[id];
    const after = desired.servers[id];
    const secrets = inputs.secretDigests;
    const secretChanged = Boolean(
      secrets && secrets.desired[id] && secrets.observed[id] && secrets.desired[id] !== secrets.observed[id],
    );
    const change: ServerChange = {
      ...changeOf(id, observedServer?.config, after, observedServer?.status, secretChanged),
      rebinds: [],
    };
    const touchesCredentials =
      change.action === 'create' || change.action === 'start' || change.restartFields.length > 0;
    if (after && touchesCredentials) {
      const rebinds = findRebinds(id, after.spec, observed.bindings, inputs.identities);
      const moved = observedServer && keptMove(id, observedServer.config.spec, after.spec, observed.bindings);
      if (moved) rebinds.push(moved);
      if (rebinds.length) {
        change.rebinds = rebinds;
        change.thenAction = change.action;
        change.action = 'rebind';
        change.approved = approvals.has(id);
        change.reasons = [
          ...rebinds.map(rebindReason),
          change.approved ? 'approved with --approve-rebind' : `needs approval: apply --approve-rebind ${id}`,
          ...change.reasons,
        ];
      }
    }
    if (change.action === 'no-op') unchanged.push(id);
    else changes.push(change);
  }
  return {
    formatVersion: PLAN_FORMAT_VERSION,
    desiredDigest: desiredDigest(desired),
    stateDigest: stateDigest(observed),
    changes,
    unchanged,
    summary: summarize(changes),
  };
}

export function summarize(changes: readonly ServerChange[]): PlanSummary {
  const summary: PlanSummary = { create: 0, update: 0, restart: 0, stop: 0, delete: 0, needApproval: 0 };
  for (const change of changes) {
    const action = effectiveAction(change);
    if (change.action === 'rebind' && !change.approved) summary.needApproval += 1;
    if (action === 'create' || action === 'start') summary.create += 1;
    else if (action === 'update') summary.update += 1;
    else if (action === 'restart') summary.restart += 1;
    else if (action === 'stop') summary.stop += 1;
    else if (action === 'delete') summary.delete += 1;
  }
  return summary;
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

export const flowOf = (spec: ServerSpec, flows: ReadonlyMap<string, FlowSpec>): FlowSpec | undefined =>
  spec.type === 'imap' && spec.flow !== undefined ? flows.get(spec.flow) : undefined;
