import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { secretDigest, type SecretResolver } from '../apply/secrets.js';
import { imapVerified, verificationFailed, verifyAll, verifyServer, type Verification } from '../apply/verify.js';
import type { ImapServerSpec, ServerSpec } from '../config/model.js';
import type { Diagnostic } from '../config/diagnostics.js';
import { folderDigest, readConfigFolder } from '../config/files.js';
import { loadSources } from '../config/load.js';
import { computePlan, desiredDigest, nextBindings, stateDigest } from '../plan/compute.js';
import { desiredState, EMPTY_STATE } from '../plan/desired.js';
import type { DesiredState, ObservedServer, ObservedState, Plan, ServerChange, ServerConfig } from '../plan/model.js';
import { discardOpened, type OpenedImap } from './loops/imap-loop.js';
import { metrics } from './metrics.js';
import type { StateStore } from './state-store.js';
import type { Supervisor } from './supervisor.js';

export type Outcome =
  | 'applied'
  | 'partly-applied'
  | 'no-changes'
  | 'dry-run'
  | 'invalid'
  | 'verification-failed'
  | 'needs-approval'
  | 'folder-mismatch'
  | 'stale-plan'
  | 'refused-deletes';

const EXIT_CODE: Record<Outcome, number> = {
  applied: 0,
  'no-changes': 0,
  'dry-run': 0,
  'partly-applied': 4,
  'needs-approval': 3,
  invalid: 1,
  'verification-failed': 1,
  'folder-mismatch': 1,
  'stale-plan': 1,
  'refused-deletes': 1,
};

export interface ReconcileRequest {
  /** Who or what asked: `cli`, `watch`, `start`, `sighup`. Recorded in the apply log. */
  trigger: string;
  /** Digest of the caller's folder files (`folderDigest`); a different folder is refused (`folder-mismatch`). */
  expectedFolderDigest?: string;
  /** Digests of a saved plan: refused as stale when the folder or the running state moved on. */
  savedPlan?: { desiredDigest: string; stateDigest: string };
  approvals?: string[];
  dryRun?: boolean;
  saveFailedAsDisabled?: boolean;
}

export interface ReconcileResult {
  outcome: Outcome;
  exitCode: number;
  message: string;
  plan: Plan | null;
  diagnostics: Diagnostic[];
  verifications: Verification[];
  /** Servers saved as disabled because their verification failed. */
  savedAsDisabled: string[];
  at: string;
}

/** What `status` shows of the last reconcile; the plan and the verifications are not kept once it is answered. */
export type ReconcileSummary = Pick<ReconcileResult, 'at' | 'outcome' | 'message' | 'diagnostics'>;

/** What a reconcile needs of the folder: kept between reconciles instead of the parsed YAML documents (far larger). */
interface LoadedFolder {
  folderDigest: string;
  valid: boolean;
  diagnostics: Diagnostic[];
  desired: DesiredState;
}

export interface ReconcilerOptions {
  dir: string;
  saveFailedAsDisabled: boolean;
  allowEmpty: boolean;
  allowMassDelete: boolean;
}

const run = promisify(execFile);

/** Git revision of the folder when it is a checkout, else null. */
async function gitRevision(dir: string): Promise<string | null> {
  try {
    const { stdout } = await run('git', ['-C', dir, 'rev-parse', 'HEAD'], { timeout: 5_000 });
    return stdout.trim() || null;
  } catch {
    return null;
  }
}

const startsLoop = (change: ServerChange): boolean => {
  const action = change.action === 'rebind' ? change.thenAction : change.action;
  return Boolean(change.after?.spec.enabled) && (action === 'create' || action === 'start' || action === 'restart');
};

/**
 * Makes the running loops converge on the folder: load → plan → guards → verify → persist → execute. One at a time;
 * every step before "persist" changes nothing, so a refused or failed reconcile leaves the last good configuration
 * running.
 */
export class Reconciler {
  private applied: ObservedState = EMPTY_STATE;
  private queue: Promise<unknown> = Promise.resolve();
  /** Servers whose rebind waits for approval (shown as `pending-approval`). */
  readonly pendingApproval = new Set<string>();
  last: ReconcileSummary | null = null;
  private loaded: LoadedFolder | null = null;

  constructor(
    private readonly options: ReconcilerOptions,
    private readonly store: StateStore,
    private readonly supervisor: Supervisor,
    private readonly resolver: SecretResolver,
    private readonly log: Logger,
  ) {
    metrics.reconcileOutcomes(Object.keys(EXIT_CODE));
  }

  get state(): ObservedState {
    return this.applied;
  }

  /** Restores the last applied configuration and starts its loops (no verification: it ran before). */
  async resume(): Promise<number> {
    const saved = await this.store.readApplied();
    if (!saved) return 0;
    this.applied = saved.state;
    const active = Object.entries(saved.state.servers).filter(([, s]) => s.status === 'active');
    for (const [id, server] of active)
      await this.supervisor.start(id, server.config, await this.digestOf(server.config));
    return active.length;
  }

  private async digestOf(config: ServerConfig): Promise<string | undefined> {
    return this.resolver.resolveAll(config.spec).then(secretDigest, () => undefined);
  }

  /** The folder, parsed and checked; reused while its files are byte-for-byte the same (a no-op stays cheap). */
  private async loadFolder(): Promise<LoadedFolder> {
    const folder = await readConfigFolder(this.options.dir);
    const digest = folderDigest(folder.files);
    if (this.loaded?.folderDigest === digest && folder.diagnostics.length === 0) return this.loaded;
    const config = loadSources(folder.files, folder.diagnostics);
    this.loaded = {
      folderDigest: config.folderDigest,
      valid: config.valid,
      diagnostics: config.diagnostics,
      desired: desiredState(config.servers, config.flows),
    };
    return this.loaded;
  }

  reconcile(request: ReconcileRequest): Promise<ReconcileResult> {
    const next = this.queue.then(() => this.reconcileNow(request));
    // settles with nothing: the queue must not keep the last result (its plan and verifications) alive
    this.queue = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private finish(outcome: Outcome, message: string, rest: Partial<ReconcileResult> = {}): ReconcileResult {
    const result: ReconcileResult = {
      outcome,
      exitCode: EXIT_CODE[outcome],
      message,
      plan: null,
      diagnostics: [],
      verifications: [],
      savedAsDisabled: [],
      at: new Date().toISOString(),
      ...rest,
    };
    if (outcome !== 'dry-run') this.last = { at: result.at, outcome, message, diagnostics: result.diagnostics };
    metrics.reconciled(outcome);
    this.log.info({ trigger: 'reconcile', outcome }, message);
    return result;
  }

  private async reconcileNow(request: ReconcileRequest): Promise<ReconcileResult> {
    const config = await this.loadFolder();
    const diagnostics = config.diagnostics;
    if (!config.valid) {
      return this.finish(
        'invalid',
        `the folder ${this.options.dir} is invalid; nothing changed and the last applied configuration keeps running`,
        { diagnostics },
      );
    }
    const { desired } = config;
    const digest = desiredDigest(desired);
    if (!request.savedPlan && request.expectedFolderDigest && request.expectedFolderDigest !== config.folderDigest) {
      return this.finish(
        'folder-mismatch',
        `the daemon applies ${this.options.dir}, which differs from the folder you gave; apply only changes the daemon's own folder (commit and sync it there)`,
        { diagnostics },
      );
    }
    if (
      request.savedPlan &&
      (request.savedPlan.desiredDigest !== digest || request.savedPlan.stateDigest !== stateDigest(this.applied))
    ) {
      const what = request.savedPlan.desiredDigest !== digest ? 'the folder' : 'the running state';
      return this.finish('stale-plan', `the saved plan is stale: ${what} changed since it was made; run plan again`, {
        diagnostics,
      });
    }
    const desiredSecrets: Record<string, string> = {};
    await Promise.all(
      Object.entries(desired.servers)
        .filter(([, s]) => s.spec.enabled)
        .map(async ([id, s]) => {
          const d = await this.digestOf(s);
          if (d) desiredSecrets[id] = d;
        }),
    );
    const plan = computePlan({
      desired,
      observed: this.applied,
      approvals: request.approvals ?? [],
      secretDigests: { desired: desiredSecrets, observed: this.supervisor.secretDigests() },
    });
    if (plan.changes.length === 0) {
      this.pendingApproval.clear();
      return this.finish(
        request.dryRun ? 'dry-run' : 'no-changes',
        'no changes: the running servers match the folder',
        { plan, diagnostics },
      );
    }
    const guarded = request.trigger !== 'cli' && this.refuseDeletes(plan);
    if (guarded) return this.finish('refused-deletes', guarded, { plan, diagnostics });

    const unapproved = plan.changes.filter((c) => c.action === 'rebind' && !c.approved);
    if (unapproved.length) {
      this.pendingApproval.clear();
      for (const c of unapproved) this.pendingApproval.add(c.id);
      return this.finish(
        'needs-approval',
        `${unapproved.map((c) => c.id).join(', ')} would send a secret to a new host; nothing changed. Approve with ${unapproved.map((c) => `--approve-rebind ${c.id}`).join(' ')}`,
        { plan, diagnostics },
      );
    }

    const toVerify = plan.changes.filter(startsLoop).map((c) => ({ id: c.id, spec: c.after!.spec, config: c.after! }));
    // a real apply verifies an IMAP server by opening the connection its loop will keep (one login per server)
    const opened = new Map<string, OpenedImap>();
    // looked up while the servers are verified (a git process), used only if the apply goes ahead; never rejects
    const revision = request.dryRun ? Promise.resolve(null) : gitRevision(this.options.dir);
    try {
      const verifications = await verifyAll(
        toVerify,
        this.resolver,
        request.dryRun ? undefined : (item) => this.verifyByOpening(item, opened),
      );
      return await this.applyVerified(request, plan, diagnostics, digest, verifications, opened, revision);
    } finally {
      // the connections of an apply that was refused, or of servers it did not start
      await Promise.all([...opened.values()].map(discardOpened));
    }
  }

  private async verifyByOpening(
    item: { id: string; spec: ServerSpec; config: ServerConfig },
    opened: Map<string, OpenedImap>,
  ): Promise<Verification> {
    if (item.spec.type !== 'imap') return verifyServer(item.id, item.spec, this.resolver);
    try {
      const connection = await this.supervisor.openFor(
        item.id,
        item.config as ServerConfig & { spec: ImapServerSpec },
        new AbortController().signal,
      );
      opened.set(item.id, connection);
      return imapVerified(item.id, connection.found, connection.secretDigest);
    } catch (err) {
      return verificationFailed(item.id, err);
    }
  }

  private async applyVerified(
    request: ReconcileRequest,
    plan: Plan,
    diagnostics: Diagnostic[],
    digest: string,
    verifications: Verification[],
    opened: Map<string, OpenedImap>,
    revisionLookup: Promise<string | null>,
  ): Promise<ReconcileResult> {
    const failed = new Map(verifications.filter((v) => !v.ok).map((v) => [v.id, v]));
    const saveFailed = request.saveFailedAsDisabled ?? this.options.saveFailedAsDisabled;
    if (request.dryRun) {
      return this.finish(
        'dry-run',
        failed.size
          ? `${failed.size} server(s) failed verification (dry run: nothing changed)`
          : 'every change verified (dry run: nothing changed)',
        {
          plan,
          diagnostics,
          verifications,
          exitCode: failed.size ? 1 : 0,
        },
      );
    }
    if (failed.size && !saveFailed) {
      return this.finish(
        'verification-failed',
        `${failed.size} server(s) failed verification; nothing changed (use --save-failed-as-disabled to apply the rest)`,
        { plan, diagnostics, verifications },
      );
    }

    const revision = await revisionLookup;
    const nextState = this.nextState(plan, failed, revision);
    await this.store.writeApplied({
      appliedAt: new Date().toISOString(),
      revision,
      desiredDigest: digest,
      state: nextState,
    });
    this.applied = nextState;
    this.pendingApproval.clear();
    const perServer = await this.execute(plan, failed, verifications, opened);
    await this.store.appendApplyLog({
      time: new Date().toISOString(),
      trigger: request.trigger,
      revision,
      planDigest: plan.desiredDigest,
      result: failed.size ? 'partly-applied' : 'applied',
      servers: perServer,
    });
    const savedAsDisabled = [...failed.keys()];
    return failed.size
      ? this.finish(
          'partly-applied',
          `applied; ${savedAsDisabled.join(', ')} saved as disabled after failing verification`,
          { plan, diagnostics, verifications, savedAsDisabled },
        )
      : this.finish('applied', `applied ${plan.changes.length} change(s)`, { plan, diagnostics, verifications });
  }

  /** Argo CD's allowEmpty idea: a folder that empties, or loses over half its servers at once, stops nothing. */
  private refuseDeletes(plan: Plan): string | null {
    const running = Object.keys(this.applied.servers).length;
    const removed = plan.changes.filter((c) => c.action === 'delete').length;
    if (running > 0 && removed === running && !this.options.allowEmpty) {
      return `the folder no longer holds any of the ${running} running server(s); nothing was stopped (start the daemon with --allow-empty to allow this)`;
    }
    if (running > 0 && removed > running / 2 && !this.options.allowMassDelete) {
      return `${removed} of ${running} servers would be deleted in one change; nothing was stopped (start the daemon with --allow-mass-delete to allow this)`;
    }
    return null;
  }

  private nextState(plan: Plan, failed: ReadonlyMap<string, Verification>, revision: string | null): ObservedState {
    const servers: Record<string, ObservedServer> = { ...this.applied.servers };
    const appliedNow = new Set<string>();
    for (const change of plan.changes) {
      if (!change.after) {
        delete servers[change.id];
        continue;
      }
      const failure = failed.get(change.id);
      servers[change.id] = failure
        ? {
            config: change.after,
            status: 'disabled',
            disabledReason: `verification failed: ${failure.failureClass}: ${failure.reason}`,
            revision,
          }
        : {
            config: change.after,
            status: change.after.spec.enabled ? 'active' : 'disabled',
            ...(!change.after.spec.enabled && { disabledReason: 'enabled: false' }),
            revision,
          };
      if (!failure && change.after.spec.enabled) appliedNow.add(change.id);
    }
    return { servers, bindings: nextBindings(this.applied.bindings, servers, appliedNow), revision };
  }

  private async execute(
    plan: Plan,
    failed: ReadonlyMap<string, Verification>,
    verifications: readonly Verification[],
    opened: Map<string, OpenedImap>,
  ): Promise<Record<string, string>> {
    const digests = new Map(verifications.map((v) => [v.id, v.secretDigest]));
    const results: Record<string, string> = {};
    for (const change of plan.changes) {
      const action = change.action === 'rebind' ? change.thenAction! : change.action;
      if (failed.has(change.id)) {
        await this.supervisor.stop(change.id);
        results[change.id] = 'saved-as-disabled';
      } else if (startsLoop(change)) {
        const connection = opened.get(change.id);
        opened.delete(change.id);
        await this.supervisor.start(change.id, change.after!, digests.get(change.id), connection);
        results[change.id] = action;
      } else if (action === 'update') {
        this.supervisor.update(change.id, change.after!);
        results[change.id] = 'update';
      } else {
        await this.supervisor.stop(change.id);
        results[change.id] = action;
      }
    }
    return results;
  }
}
