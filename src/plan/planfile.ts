/**
 * On-disk formats of `plan --out FILE` (a saved plan that `apply PLANFILE` executes) and of `state pull` (the running
 * state, for planning without access to the daemon). Pure: text in, text or a checked value out; no file system.
 *
 * Neither format ever holds a secret value: server configurations carry secret references only.
 */
import { parseSecretRef } from '../config/secret-ref.js';
import type { StoreKind } from '../config/sinks.js';
import { stateDigest, summarize } from './compute.js';
import { PLAN_FORMAT_VERSION, type ActionName, type ObservedState, type Plan, type ServerChange } from './model.js';

export const PLAN_FILE_KIND = 'mailctl-plan';
export const STATE_FILE_KIND = 'mailctl-state';

export interface PlanFile {
  formatVersion: typeof PLAN_FORMAT_VERSION;
  kind: typeof PLAN_FILE_KIND;
  /** The configuration folder as it was given to `plan --dir`. */
  dir: string;
  /** ISO 8601 time the plan was computed. */
  createdAt: string;
  plan: Plan;
}

export interface StateFile {
  formatVersion: typeof PLAN_FORMAT_VERSION;
  kind: typeof STATE_FILE_KIND;
  /** `stateDigest(state)`: checked on reading, so an edited file is not mistaken for what the daemon reported. */
  stateDigest: string;
  state: ObservedState;
  /** The daemon's store (absent in files pulled before stores had kinds): what it can deliver into. */
  store?: { kind: StoreKind };
}

/** The outcome of reading a file: the value, or one sentence saying what is wrong with it. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const ACTIONS: readonly ActionName[] = ['create', 'update', 'restart', 'stop', 'delete', 'start', 'rebind', 'no-op'];
const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function serializePlanFile(input: { dir: string; createdAt: string | Date; plan: Plan }): string {
  const file: PlanFile = {
    formatVersion: PLAN_FORMAT_VERSION,
    kind: PLAN_FILE_KIND,
    dir: input.dir,
    createdAt: typeof input.createdAt === 'string' ? input.createdAt : input.createdAt.toISOString(),
    plan: input.plan,
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

export function parsePlanFile(text: string): Parsed<PlanFile> {
  const doc = parseJsonObject(text, 'plan file');
  if (!doc.ok) return doc;
  const value = doc.value;
  const header = checkHeader(value, PLAN_FILE_KIND, 'plan file', 'mailctl plan --out FILE');
  if (header) return fail(header);
  if (typeof value.dir !== 'string' || value.dir === '')
    return fail('malformed plan file: "dir" must be a non-empty string');
  if (typeof value.createdAt !== 'string' || Number.isNaN(Date.parse(value.createdAt))) {
    return fail('malformed plan file: "createdAt" must be an ISO 8601 time');
  }
  const planError = checkPlan(value.plan);
  if (planError) return fail(`malformed plan file: ${planError}`);
  return { ok: true, value: value as unknown as PlanFile };
}

export function serializeStateFile(state: ObservedState, store?: StoreKind): string {
  const file: StateFile = {
    formatVersion: PLAN_FORMAT_VERSION,
    kind: STATE_FILE_KIND,
    stateDigest: stateDigest(state),
    state,
    ...(store && { store: { kind: store } }),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

export function parseStateFile(text: string): Parsed<StateFile> {
  const doc = parseJsonObject(text, 'state file');
  if (!doc.ok) return doc;
  const value = doc.value;
  const header = checkHeader(value, STATE_FILE_KIND, 'state file', 'mailctl state pull > FILE');
  if (header) return fail(header);
  const stateError = checkObservedState(value.state);
  if (stateError) return fail(`malformed state file: ${stateError}`);
  const state = value.state as ObservedState;
  if (typeof value.stateDigest !== 'string' || !DIGEST.test(value.stateDigest)) {
    return fail('malformed state file: "stateDigest" must be "sha256:" and 64 hex digits');
  }
  if (value.stateDigest !== stateDigest(state)) {
    return fail(
      'the state file was changed after it was pulled (its stateDigest does not match its content); pull it ' +
        'again with mailctl state pull',
    );
  }
  const storeError = checkStore(value.store);
  if (storeError) return fail(`malformed state file: ${storeError}`);
  return { ok: true, value: value as unknown as StateFile };
}

/** A kept credential's id, under which the daemon binds what it keeps (config/oauth2.ts). */
const CREDENTIAL_ID = /^oauth2\/[0-9a-f]{12}$/;
/** `store` of a state (file or `GET /v1/state`): absent, or `{ kind: "file" | "postgres" }`. */
export function checkStore(value: unknown): string | null {
  if (value === undefined) return null;
  if (!isRecord(value) || (value.kind !== 'file' && value.kind !== 'postgres'))
    return '"store" must be { "kind": "file" } or { "kind": "postgres" }';
  return null;
}

/**
 * Checks that a value has the shape of an ObservedState (the daemon's `GET /v1/state` answer, or a state file).
 * Returns what is wrong, or null. Keys must be what the plan expects: `type/shortName` for servers, secret references
 * and credential ids for bindings (which also keeps `__proto__` and friends out).
 */
export function checkObservedState(value: unknown): string | null {
  if (!isRecord(value)) return '"state" must be an object';
  if (!isRecord(value.servers)) return '"state.servers" must be an object';
  if (!isRecord(value.bindings)) return '"state.bindings" must be an object';
  if (value.revision !== undefined && value.revision !== null && typeof value.revision !== 'string')
    return '"state.revision" must be a string or null';
  for (const [id, server] of Object.entries(value.servers)) {
    const where = `state.servers[${JSON.stringify(id)}]`;
    if (!isRecord(server)) return `${where} must be an object`;
    if (server.status !== 'active' && server.status !== 'disabled')
      return `${where}.status must be "active" or "disabled"`;
    if (server.disabledReason !== undefined && typeof server.disabledReason !== 'string')
      return `${where}.disabledReason must be a string`;
    if (server.revision !== undefined && server.revision !== null && typeof server.revision !== 'string')
      return `${where}.revision must be a string or null`;
    const configError = checkConfig(server.config, `${where}.config`);
    if (configError) return configError;
    const spec = (server.config as { spec: { type: string; shortName: string } }).spec;
    if (`${spec.type}/${spec.shortName}` !== id)
      return `${where} holds the configuration of ${spec.type}/${spec.shortName}`;
  }
  for (const [reference, bindings] of Object.entries(value.bindings)) {
    const where = `state.bindings[${JSON.stringify(reference)}]`;
    if (parseSecretRef(reference) === null && !CREDENTIAL_ID.test(reference))
      return `${where}: the key must be a secret reference such as \${env:NAME} or a credential id (oauth2/<12 hex>)`;
    if (!Array.isArray(bindings)) return `${where} must be a list of bound targets`;
    for (const [i, binding] of bindings.entries()) {
      const at = `${where}[${i}]`;
      if (!isRecord(binding)) return `${at} must be an object`;
      if (
        typeof binding.host !== 'string' ||
        !isPort(binding.port) ||
        typeof binding.tls !== 'boolean' ||
        typeof binding.allowPlaintext !== 'boolean'
      ) {
        return `${at} must have host (string), port (1-65535), tls and allowPlaintext (booleans)`;
      }
      for (const field of ['tokenUrl', 'deviceAuthorizationUrl', 'provider', 'tenant', 'tlsCaFile', 'sniServerName'])
        if (binding[field] !== undefined && typeof binding[field] !== 'string')
          return `${at}.${field} must be a string`;
      if (typeof binding.boundBy !== 'string') return `${at}.boundBy must be a string`;
    }
  }
  return null;
}

function checkConfig(value: unknown, where: string): string | null {
  if (!isRecord(value)) return `${where} must be an object`;
  const spec = value.spec;
  if (!isRecord(spec)) return `${where}.spec must be an object`;
  if (spec.type !== 'imap' && spec.type !== 'smtp') return `${where}.spec.type must be "imap" or "smtp"`;
  for (const key of ['name', 'shortName', 'host'] as const) {
    if (typeof spec[key] !== 'string') return `${where}.spec.${key} must be a string`;
  }
  if (!isPort(spec.port)) return `${where}.spec.port must be a port number`;
  for (const key of ['tls', 'allowPlaintext', 'enabled'] as const) {
    if (typeof spec[key] !== 'boolean') return `${where}.spec.${key} must be a boolean`;
  }
  if (!isRecord(spec.auth) || (spec.auth.type !== 'basic' && spec.auth.type !== 'oauth2'))
    return `${where}.spec.auth must be basic or oauth2 auth`;
  if (value.flow !== undefined && !isRecord(value.flow)) return `${where}.flow must be an object`;
  return null;
}

function checkPlan(value: unknown): string | null {
  if (!isRecord(value)) return '"plan" must be an object';
  if (value.formatVersion !== PLAN_FORMAT_VERSION) return `plan.formatVersion must be "${PLAN_FORMAT_VERSION}"`;
  for (const key of ['desiredDigest', 'stateDigest'] as const) {
    if (typeof value[key] !== 'string' || !DIGEST.test(value[key]))
      return `plan.${key} must be "sha256:" and 64 hex digits`;
  }
  if (!Array.isArray(value.changes)) return 'plan.changes must be a list';
  if (!isStringList(value.unchanged)) return 'plan.unchanged must be a list of server identities';
  const seen = new Set<string>(value.unchanged);
  for (const [i, change] of value.changes.entries()) {
    const error = checkChange(change, `plan.changes[${i}]`);
    if (error) return error;
    const { id } = change as ServerChange;
    if (seen.has(id)) return `${id} appears more than once in the plan`;
    seen.add(id);
  }
  if (!isRecord(value.summary)) return 'plan.summary must be an object';
  const expected = summarize(value.changes as ServerChange[]);
  for (const [key, count] of Object.entries(expected)) {
    if (value.summary[key] !== count)
      return `plan.summary.${key} is ${JSON.stringify(value.summary[key])} but the changes count ${count}`;
  }
  return null;
}

function checkChange(value: unknown, where: string): string | null {
  if (!isRecord(value)) return `${where} must be an object`;
  if (typeof value.id !== 'string' || !/^(imap|smtp)\/.+/.test(value.id))
    return `${where}.id must be a server identity such as imap/support`;
  if (!ACTIONS.includes(value.action as ActionName) || value.action === 'no-op')
    return `${where}.action must be one of ${ACTIONS.filter((a) => a !== 'no-op').join(', ')}`;
  for (const key of ['changedFields', 'restartFields', 'reasons'] as const) {
    if (!isStringList(value[key])) return `${where}.${key} must be a list of strings`;
  }
  if (!Array.isArray(value.rebinds)) return `${where}.rebinds must be a list`;
  const needsBefore = value.action !== 'create' && !(value.action === 'rebind' && value.thenAction === 'create');
  const needsAfter = value.action !== 'delete';
  if (needsBefore || value.before !== undefined) {
    const error = checkConfig(value.before, `${where}.before`);
    if (error) return error;
  }
  if (needsAfter || value.after !== undefined) {
    const error = checkConfig(value.after, `${where}.after`);
    if (error) return error;
  }
  if (value.action === 'rebind') {
    if (!['create', 'update', 'restart', 'start'].includes(value.thenAction as string))
      return `${where}.thenAction must be create, update, restart or start`;
    if (typeof value.approved !== 'boolean') return `${where}.approved must be a boolean`;
    if (value.rebinds.length === 0) return `${where} is a rebind without rebinds`;
  }
  return null;
}

function checkHeader(value: Record<string, unknown>, kind: string, what: string, producer: string): string | null {
  if (value.kind !== kind) {
    const other =
      value.kind === PLAN_FILE_KIND ? 'a plan file' : value.kind === STATE_FILE_KIND ? 'a state file' : null;
    return `not a ${what}${other ? ` (it is ${other})` : ''}: expected "kind": "${kind}" as written by ${producer}`;
  }
  if (value.formatVersion !== PLAN_FORMAT_VERSION) {
    return (
      `unsupported ${what} formatVersion ${JSON.stringify(value.formatVersion)}: this mailctl reads ` +
      `formatVersion "${PLAN_FORMAT_VERSION}"; run ${producer} again with this version`
    );
  }
  return null;
}

function parseJsonObject(text: string, what: string): Parsed<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    return fail(`not a ${what}: it is not valid JSON (${(err as Error).message})`);
  }
  if (!isRecord(value)) return fail(`not a ${what}: expected a JSON object`);
  return { ok: true, value };
}

const fail = (error: string): { ok: false; error: string } => ({ ok: false, error });
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
const isPort = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;
