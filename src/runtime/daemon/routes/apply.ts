/** `POST /v1/apply` (reconcile now), `GET /v1/status` and `GET /v1/state` (the running state, for `plan --state`). */
import { capText } from '../../../adapters/text.js';
import {
  API_FORMAT_VERSION,
  NDJSON,
  type ApplyProgress,
  type ApplyRequest,
  type ApplyResult,
  type DaemonStatus,
  type StatePull,
} from '../../../api/index.js';
import { stateDigest } from '../../../plan/compute.js';
import type { ObservedState } from '../../../plan/model.js';
import type { IncomingMessage } from 'node:http';
import { HttpError, type Answer, type Route } from '../http.js';

export interface ApplyDeps {
  reconcile: (request: ApplyRequest, onProgress?: (progress: ApplyProgress) => void) => Promise<ApplyResult>;
  state: () => ObservedState;
  storeKind: StatePull['store']['kind'];
  /** A replica's status includes its group's, read from the store (asynchronously). */
  status: () => DaemonStatus | Promise<DaemonStatus>;
  draining: () => boolean;
  /**
   * A replica of a group: the URL of the replica that reconciles when it is another one (the request goes there), or
   * null when this one does.
   */
  reconcilerElsewhere?: () => Promise<string | null>;
  /** Passes a request on to another replica. */
  forward?: (base: string, path: string, req: IncomingMessage, body: unknown) => Promise<Answer>;
}

const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((a): a is string => typeof a === 'string') : [];

/** The body of `POST /v1/apply` as the CLI sends it, read defensively (unknown fields are ignored). */
function applyRequestOf(raw: unknown): ApplyRequest {
  const body = (raw ?? {}) as Record<string, unknown>;
  const saved = body.savedPlan as { desiredDigest?: unknown; stateDigest?: unknown } | undefined;
  return {
    trigger: typeof body.trigger === 'string' ? capText(body.trigger) : 'cli',
    approvals: strings(body.approvals),
    reauthenticate: strings(body.reauthenticate),
    dryRun: body.dryRun === true,
    ...(body.saveFailedAsDisabled === true && { saveFailedAsDisabled: true }),
    ...(typeof body.folderDigest === 'string' && { expectedFolderDigest: body.folderDigest }),
    ...(typeof saved?.desiredDigest === 'string' &&
      typeof saved.stateDigest === 'string' && {
        savedPlan: { desiredDigest: saved.desiredDigest, stateDigest: saved.stateDigest },
      }),
  };
}

export function applyRoutes(deps: ApplyDeps): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/status',
      handler: async () => ({ status: 200, body: { formatVersion: API_FORMAT_VERSION, ...(await deps.status()) } }),
    },
    {
      method: 'GET',
      path: '/v1/state',
      handler: () => {
        const state = deps.state();
        const body: StatePull = {
          formatVersion: API_FORMAT_VERSION,
          kind: 'mailctl-state',
          stateDigest: stateDigest(state),
          state,
          store: { kind: deps.storeKind },
        };
        return { status: 200, body };
      },
    },
    {
      method: 'POST',
      path: '/v1/apply',
      // with `Accept: application/x-ndjson` the answer streams progress lines, then the same result as one line
      handler: async (req, raw) => {
        if (deps.draining()) throw new HttpError(503, 'the daemon is shutting down');
        const elsewhere = await deps.reconcilerElsewhere?.();
        if (elsewhere && deps.forward) return deps.forward(elsewhere, '/v1/apply', req, raw);
        const request = applyRequestOf(raw);
        if (req.headers.accept?.includes(NDJSON)) {
          const stream = async (write: (line: unknown) => void) => {
            const result = await deps.reconcile(request, write);
            write({ type: 'result', formatVersion: API_FORMAT_VERSION, ...result });
          };
          return { status: 200, body: null, stream };
        }
        const result = await deps.reconcile(request);
        return { status: 200, body: { formatVersion: API_FORMAT_VERSION, ...result } };
      },
    },
  ];
}
