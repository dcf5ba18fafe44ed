/**
 * The reconciler: makes the running loops converge on the folder. It carries out what plan/ decides (the plan, and
 * plan/policy.ts for what follows from it) and has the side effects only: verifying against real servers, storing the
 * applied state, starting and stopping loops. Level-based: every reconcile recomputes the whole difference.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { ApplyOutcome, ApplyProgress, ApplyRequest, ApplyResult, ReconcileSummary } from '../../api/index.js';
import { secretDigest, type SecretResolver } from '../../connect/secrets.js';
import {
  imapVerified,
  publicVerification,
  verificationFailed,
  verifyAll,
  verifyServer,
  type CheckedServer,
} from '../../connect/verify.js';
import type { ImapServerSpec, ServerSpec } from '../../config/model.js';
import type { Diagnostic } from '../../config/diagnostics.js';
import { folderDigest, readConfigFolder } from '../../config/files.js';
import { loadSources } from '../../config/load.js';
import { computePlan, desiredDigest, stateDigest } from '../../plan/compute.js';
import { desiredState, EMPTY_STATE } from '../../plan/desired.js';
import {
  effectiveAction,
  type DesiredState,
  type ObservedState,
  type Plan,
  type ServerConfig,
} from '../../plan/model.js';
import { nextState, refuseDeletes, startsLoop, stepOf } from '../../plan/policy.js';
import type { AppliedStore } from '../../store/ports.js';
import { discardOpened, type OpenedImap } from '../loops/imap-loop.js';
import type { Supervisor } from '../loops/supervisor.js';

/** What a reconcile reports beyond its result (the metrics recorder). */
export interface ReconcileRecorder {
  reconciled(outcome: ApplyOutcome): void;
}

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
    private readonly store: AppliedStore,
    private readonly supervisor: Supervisor,
    private readonly resolver: SecretResolver,
    private readonly log: Logger,
    private readonly recorder: ReconcileRecorder,
  ) {}

  get state(): ObservedState {
    return this.applied;
  }

  /** Restores the last applied configuration and starts its loops (no verification: it ran before). */
  async resume(): Promise<number> {
    const saved = await this.store.read();
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

  /** Runs a reconcile after the ones before it; `onProgress` hears how verification goes (a long apply). */
  reconcile(request: ApplyRequest, onProgress?: (progress: ApplyProgress) => void): Promise<ApplyResult> {
    const next = this.queue.then(() => this.reconcileNow(request, onProgress));
    // settles with nothing: the queue must not keep the last result (its plan and verifications) alive
    this.queue = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private finish(
    outcome: ApplyOutcome,
    message: string,
    rest: Partial<Omit<ApplyResult, 'verifications'>> & { verifications?: CheckedServer[] } = {},
  ): ApplyResult {
    const result: ApplyResult = {
      outcome,
      message,
      plan: null,
      diagnostics: [],
      savedAsDisabled: [],
      at: new Date().toISOString(),
      ...rest,
      verifications: (rest.verifications ?? []).map(publicVerification),
    };
    if (outcome !== 'dry-run') this.last = { at: result.at, outcome, message, diagnostics: result.diagnostics };
    this.recorder.reconciled(outcome);
    this.log.info({ trigger: 'reconcile', outcome }, message);
    return result;
  }

  private async reconcileNow(
    request: ApplyRequest,
    onProgress?: (progress: ApplyProgress) => void,
  ): Promise<ApplyResult> {
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
    const guarded = request.trigger !== 'cli' && refuseDeletes(plan, this.applied, this.options);
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
      const started = Date.now();
      const progress: ApplyProgress = {
        type: 'progress',
        total: toVerify.length,
        verified: 0,
        failed: 0,
        elapsedMs: 0,
      };
      onProgress?.({ ...progress });
      const verifications = await verifyAll(toVerify, this.resolver, {
        ...(!request.dryRun && { verify: (item) => this.verifyByOpening(item, opened) }),
        onVerified: (v) => {
          progress.verified += 1;
          if (!v.ok) progress.failed += 1;
          onProgress?.({ ...progress, elapsedMs: Date.now() - started });
        },
      });
      return await this.applyVerified(request, plan, diagnostics, digest, verifications, opened, revision);
    } finally {
      // the connections of an apply that was refused, or of servers it did not start
      await Promise.all([...opened.values()].map(discardOpened));
    }
  }

  private async verifyByOpening(
    item: { id: string; spec: ServerSpec; config: ServerConfig },
    opened: Map<string, OpenedImap>,
  ): Promise<CheckedServer> {
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
    request: ApplyRequest,
    plan: Plan,
    diagnostics: Diagnostic[],
    digest: string,
    verifications: CheckedServer[],
    opened: Map<string, OpenedImap>,
    revisionLookup: Promise<string | null>,
  ): Promise<ApplyResult> {
    const failed = new Map(verifications.filter((v) => !v.ok).map((v) => [v.id, v]));
    const saveFailed = request.saveFailedAsDisabled ?? this.options.saveFailedAsDisabled;
    if (request.dryRun) {
      return this.finish(
        'dry-run',
        failed.size
          ? `${failed.size} server(s) failed verification (dry run: nothing changed)`
          : 'every change verified (dry run: nothing changed)',
        { plan, diagnostics, verifications },
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
    const next = nextState(this.applied, plan, failed, revision);
    await this.store.write({ appliedAt: new Date().toISOString(), revision, desiredDigest: digest, state: next });
    this.applied = next;
    this.pendingApproval.clear();
    const perServer = await this.execute(plan, failed, verifications, opened);
    await this.store.appendLog({
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

  /** Carries out each change of a verified plan, in plan order; returns what happened per server (apply log). */
  private async execute(
    plan: Plan,
    failed: ReadonlyMap<string, CheckedServer>,
    verifications: readonly CheckedServer[],
    opened: Map<string, OpenedImap>,
  ): Promise<Record<string, string>> {
    const digests = new Map(verifications.map((v) => [v.id, v.secretDigest]));
    const results: Record<string, string> = {};
    for (const change of plan.changes) {
      const step = stepOf(change, failed.has(change.id));
      if (step === 'start') {
        const connection = opened.get(change.id);
        opened.delete(change.id);
        await this.supervisor.start(change.id, change.after!, digests.get(change.id), connection);
      } else if (step === 'update') this.supervisor.update(change.id, change.after!);
      else await this.supervisor.stop(change.id);
      results[change.id] = step === 'keep-disabled' ? 'saved-as-disabled' : effectiveAction(change);
    }
    return results;
  }
}
