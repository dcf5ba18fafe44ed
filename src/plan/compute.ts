/**
 * Pure planning: desired folder + observed running state → Plan. No file system, no network, no clock.
 * Level-based: every call recomputes the whole difference; nothing depends on which event triggered it.
 */
import type { FlowSpec, ServerSpec } from '../config/model.js';
import { rebindReason, rebindsOf } from './bindings.js';
import { canonicalJson, digestOf } from './digest.js';
import {
  effectiveAction,
  PLAN_FORMAT_VERSION,
  type DesiredState,
  type ObservedState,
  type Plan,
  type PlanSummary,
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
      const before = observedServer?.config.spec;
      const rebinds = rebindsOf(id, before, after.spec, observed.bindings, inputs.identities);
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

export const flowOf = (spec: ServerSpec, flows: ReadonlyMap<string, FlowSpec>): FlowSpec | undefined =>
  spec.type === 'imap' && spec.flow !== undefined ? flows.get(spec.flow) : undefined;
