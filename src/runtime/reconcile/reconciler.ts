/**
 * The reconciler: makes the running loops converge on the folder. It carries out what plan/ decides (the plan, and
 * plan/policy.ts for what follows from it) and has the side effects only: verifying against real servers, storing the
 * applied state, starting and stopping loops. Level-based: every reconcile recomputes the whole difference.
 */
import type { Logger } from 'pino';
import type { ApplyOutcome, ApplyProgress, ApplyRequest, ApplyResult, ReconcileSummary } from '../../api/index.js';
import type { CredentialsKey } from '../../connect/credentials-key.js';
import { secretDigest, type SecretResolver } from '../../connect/secrets.js';
import { publicVerification, type CheckedServer } from '../../connect/verify.js';
import type { ServerSpec } from '../../config/model.js';
import type { Diagnostic } from '../../config/diagnostics.js';
import { queueTableOf, type StoreKind } from '../../config/sinks.js';
import { computePlan, desiredDigest, stateDigest } from '../../plan/compute.js';
import { EMPTY_STATE } from '../../plan/desired.js';
import {
  effectiveAction,
  type DesiredState,
  type ObservedState,
  type Plan,
  type SecretIdentities,
  type ServerConfig,
} from '../../plan/model.js';
import {
  followingSteps,
  nextIdentityBindings,
  nextState,
  refuseDeletes,
  startsLoop,
  stepOf,
} from '../../plan/policy.js';
import type { AppliedRecord, AppliedStore, ApplyLogEntry, IdentityBindings } from '../../store/ports.js';
import type { OpenedImap } from '../loops/imap-loop.js';
import type { Supervisor } from '../loops/supervisor.js';
import { invalidateTokens, moveKept, reauthenticated, reauthenticateOf, type ReconcilerCredentials } from './oauth2.js';
import { ConfigFolder } from './folder.js';
import { addIdentities, desiredSecrets, remadeBindings } from './identities.js';
import { discardAll, verifyForApply } from './verification.js';

export type { ReconcilerCredentials } from './oauth2.js';

/** What the reconciler asks of the loops: the Supervisor, or for a replica of a group the loops it owns. */
export type LoopControl = Pick<Supervisor, 'start' | 'update' | 'stop' | 'openFor' | 'secretDigests'>;

/** What a reconcile reports beyond its result (the metrics recorder). */
export interface ReconcileRecorder {
  reconciled(outcome: ApplyOutcome): void;
}

export interface ReconcilerOptions {
  dir: string;
  saveFailedAsDisabled: boolean;
  allowEmpty: boolean;
  allowMassDelete: boolean;
  /** Makes the identities of secrets (credential bindings are also kept by them). */
  credentialsKey: CredentialsKey;
  /** What this daemon's flags do not allow in a folder (a CA file outside --ca-dir...), one sentence each. */
  refusals: (desired: DesiredState) => Promise<string[]>;
  /** The daemon's store, as far as sinks care: what it can deliver into, and its queue tables (made at apply). */
  sinks: { store: StoreKind; prepareQueue(table: string): Promise<void> };
  /**
   * A replica of a group: whether it holds the reconciler lease now. The others follow the applied generation
   * (`follow`) and only compare their folder with it (config drift); a reconcile there changes nothing.
   */
  leads?: () => boolean;
  /** The daemon's OAuth2 credentials: reauthentication discards their access tokens, an approved move moves them. */
  credentials?: ReconcilerCredentials;
}

/**
 * Makes the running loops converge on the folder: load → plan → guards → verify → persist → execute. One at a time;
 * every step before "persist" changes nothing, so a refused or failed reconcile leaves the last good configuration
 * running.
 */
export class Reconciler {
  private applied: ObservedState = EMPTY_STATE;
  private identities: IdentityBindings;
  private queue: Promise<unknown> = Promise.resolve();
  /** Servers whose rebind waits for approval (shown as `pending-approval`). */
  readonly pendingApproval = new Set<string>();
  last: ReconcileSummary | null = null;
  private readonly folder: ConfigFolder;
  /** The applied record's generation this daemon runs (0: none yet, or a store that does not count them). */
  generation = 0;
  /** The folder differs from the applied generation (a replica that does not reconcile keeps running that one). */
  drift = false;

  constructor(
    private readonly options: ReconcilerOptions,
    private readonly store: AppliedStore,
    private readonly supervisor: LoopControl,
    private readonly resolver: SecretResolver,
    private readonly log: Logger,
    private readonly recorder: ReconcileRecorder,
  ) {
    this.identities = { keyId: options.credentialsKey.id, bindings: {} };
    this.folder = new ConfigFolder(options.dir, options.sinks);
  }

  get state(): ObservedState {
    return this.applied;
  }

  /** Restores the last applied configuration and starts its loops (no verification: it ran before). */
  async resume(): Promise<number> {
    const saved = await this.store.read();
    if (!saved) return 0;
    this.applied = saved.state;
    this.generation = saved.generation ?? 0;
    if (saved.identities?.keyId === this.identities.keyId) this.identities = saved.identities;
    else await this.makeIdentities(saved);
    const active = Object.entries(saved.state.servers).filter(([, s]) => s.status === 'active');
    for (const [id, server] of active)
      await this.supervisor.start(id, server.config, await this.digestOf(server.config));
    return active.length;
  }

  private async digestOf(config: ServerConfig): Promise<string | undefined> {
    return this.resolver.resolveAll(config.spec).then(secretDigest, () => undefined);
  }

  /**
   * Makes the identity bindings from the reference bindings, once: for a record written before they existed (also
   * completing each binding with the CA file and SNI name of the server that made it), or made under another key.
   */
  private async makeIdentities(saved: AppliedRecord): Promise<void> {
    const legacy = saved.identities === undefined;
    const { bindings, byIdentity } = await remadeBindings(saved, this.resolver, this.options.credentialsKey, this.log);
    await this.persist({
      ...saved,
      state: { ...saved.state, bindings },
      identities: { keyId: this.identities.keyId, bindings: byIdentity },
    });
    this.log.warn(
      { bindings: Object.keys(bindings).length },
      legacy
        ? 'applied state migrated: credential bindings are now also kept by the identity of each secret'
        : 'the credentials key is not the one the applied state was written with: credential bindings by ' +
            'identity made again from the references',
    );
  }

  /**
   * Stores the record and goes on with what the store holds: its texts are scrubbed (a verification failure quoting a
   * secret), and plans, saved plans and `state pull` must all digest that same state.
   */
  private async persist(record: AppliedRecord & { identities: IdentityBindings }): Promise<void> {
    await this.store.write(record);
    const stored = (await this.store.read()) ?? record;
    this.applied = stored.state;
    this.identities = stored.identities ?? record.identities;
    this.generation = stored.generation ?? 0;
  }

  /**
   * A replica that does not reconcile: runs the applied generation another replica wrote (no verification: that one
   * verified it), starting, updating and stopping the loops it owns. Also tells whether its own folder differs.
   */
  follow(): Promise<void> {
    const next = this.queue.then(async () => {
      const saved = await this.store.read();
      if (saved && (saved.generation ?? 0) !== this.generation) {
        const before = this.applied;
        this.applied = saved.state;
        this.generation = saved.generation ?? 0;
        if (saved.identities?.keyId === this.identities.keyId) this.identities = saved.identities;
        const steps = followingSteps(before, saved.state);
        this.log.info({ generation: this.generation, changes: steps.length }, 'following the applied configuration');
        for (const { id, step } of steps) {
          const config = saved.state.servers[id]!.config;
          if (step === 'start') await this.supervisor.start(id, config, await this.digestOf(config));
          else if (step === 'update') this.supervisor.update(id, config);
          else await this.supervisor.stop(id);
        }
      }
      await this.checkDrift();
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Whether this daemon's folder differs from what runs (shown as config-drift; it keeps running the applied one). */
  private async checkDrift(): Promise<void> {
    const config = await this.folder.load().catch(() => null);
    const applied = await this.store.read().catch(() => null);
    const drift =
      config !== null && applied !== null && (!config.valid || desiredDigest(config.desired) !== applied.desiredDigest);
    if (drift !== this.drift)
      this.log[drift ? 'warn' : 'info'](
        { generation: this.generation },
        drift
          ? `config-drift: the folder ${this.options.dir} differs from the applied generation ` +
              `${this.generation}, which keeps running`
          : 'the folder matches the applied generation again',
      );
    this.drift = drift;
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
    if (this.options.leads && !this.options.leads()) {
      await this.checkDrift();
      return this.finish(
        'no-changes',
        'this replica does not reconcile (another replica holds the reconciler lease); it runs the applied ' +
          'configuration',
      );
    }
    const config = await this.folder.load();
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
        `the daemon applies ${this.options.dir}, which differs from the folder you gave; apply only changes ` +
          `the daemon's own folder (commit and sync it there)`,
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
    const refusals = await this.options.refusals(desired);
    if (refusals.length)
      return this.finish('refused-config', `${refusals.join('; ')}; nothing changed`, { diagnostics });
    const secrets = await desiredSecrets(desired, this.resolver, this.options.credentialsKey);
    const identities = { ofReference: secrets.ofReference, bindings: this.identities.bindings };
    const plan = computePlan({
      desired,
      observed: this.applied,
      approvals: request.approvals ?? [],
      secretDigests: { desired: secrets.digests, observed: this.supervisor.secretDigests() },
      identities,
    });
    const reauthenticate = reauthenticateOf(request, desired, plan);
    if (typeof reauthenticate === 'string') return this.finish('invalid', reauthenticate, { plan, diagnostics });
    if (plan.changes.length === 0) {
      this.pendingApproval.clear();
      if (reauthenticate.length === 0)
        return this.finish(
          request.dryRun ? 'dry-run' : 'no-changes',
          'no changes: the running servers match the folder',
          { plan, diagnostics },
        );
      const verifications = await reauthenticated(this.options.credentials, reauthenticate, this.resolver);
      const failed = verifications.filter((v) => !v.ok).length;
      const ids = reauthenticate.map((r) => r.id).join(', ');
      return failed
        ? this.finish('verification-failed', `${failed} server(s) failed to reauthenticate; nothing changed`, {
            plan,
            diagnostics,
            verifications,
          })
        : this.finish(request.dryRun ? 'dry-run' : 'no-changes', `no changes; reauthenticated ${ids}`, {
            plan,
            diagnostics,
            verifications,
          });
    }
    const guarded = request.trigger !== 'cli' && refuseDeletes(plan, this.applied, this.options);
    if (guarded) return this.finish('refused-deletes', guarded, { plan, diagnostics });

    const unapproved = plan.changes.filter((c) => c.action === 'rebind' && !c.approved);
    if (unapproved.length) {
      this.pendingApproval.clear();
      for (const c of unapproved) this.pendingApproval.add(c.id);
      return this.finish(
        'needs-approval',
        `${unapproved.map((c) => c.id).join(', ')} would send a secret to a new host; nothing changed. ` +
          `Approve with ${unapproved.map((c) => `--approve-rebind ${c.id}`).join(' ')}`,
        { plan, diagnostics },
      );
    }

    const toVerify = plan.changes.filter(startsLoop).map((c) => ({ id: c.id, spec: c.after!.spec, config: c.after! }));
    // a server reauthenticated without a new loop is verified on a connection of its own
    const reauthOnly = reauthenticate.filter((r) => !toVerify.some((v) => v.id === r.id));
    invalidateTokens(this.options.credentials, reauthenticate);
    if (!request.dryRun) await moveKept(this.options.credentials, plan, desired);
    const opened = new Map<string, OpenedImap>();
    // looked up while the servers are verified (a git process), used only if the apply goes ahead; never rejects
    const revision = request.dryRun ? Promise.resolve(null) : this.folder.revision();
    try {
      const verifications = await verifyForApply(toVerify, reauthOnly, {
        resolver: this.resolver,
        ...(!request.dryRun && {
          openFor: (id, config, signal) => this.supervisor.openFor(id, config, signal),
        }),
        opened,
        onProgress,
      });
      const unchangedFailed = verifications.filter((v) => !v.ok && !plan.changes.some((c) => c.id === v.id));
      if (unchangedFailed.length && !request.dryRun)
        return this.finish(
          'verification-failed',
          `${unchangedFailed.map((v) => v.id).join(', ')} failed to reauthenticate; nothing changed`,
          { plan, diagnostics, verifications },
        );
      return await this.applyVerified(request, plan, diagnostics, digest, verifications, opened, revision, identities);
    } finally {
      await discardAll(opened);
    }
  }

  /** Records a sign-in in the apply log (who, when, which credential; never a token). */
  recordSignIn(entry: Omit<ApplyLogEntry, 'revision' | 'planDigest'>): Promise<void> {
    return this.store.appendLog({ ...entry, revision: null, planDigest: '' });
  }

  /**
   * The folder's configuration of server `id` for a sign-in, and the rebinds it would need (a sign-in sends the client
   * secret to the token and device endpoints); or why there is none (an invalid folder, no such server).
   */
  async desiredServer(id: string, approved: boolean): Promise<{ spec: ServerSpec; rebinds: string[] } | string> {
    const config = await this.folder.load();
    if (!config.valid) return `the folder ${this.options.dir} is invalid; fix it first (mailctl validate)`;
    const after = config.desired.servers[id];
    if (!after) return `the folder ${this.options.dir} has no server ${id}`;
    const values = await this.resolver.resolveAll(after.spec).catch(() => null);
    const ofReference = addIdentities({}, values, this.options.credentialsKey);
    const plan = computePlan({
      desired: { servers: { ...this.desiredOthers(id), [id]: after } },
      observed: this.applied,
      approvals: approved ? [id] : [],
      identities: { ofReference, bindings: this.identities.bindings },
    });
    const change = plan.changes.find((c) => c.id === id);
    const rebinds =
      change?.action === 'rebind' && !change.approved
        ? // what a sign-in sends: the client secret (certificate, key); a kept credential is replaced, not sent
          change.rebinds.filter((r) => !r.reference.startsWith('oauth2/')).map((r) => r.reference)
        : [];
    return { spec: after.spec, rebinds };
  }

  /** The applied servers but `id`, so that a plan for one server leaves the others as they are. */
  private desiredOthers(id: string): DesiredState['servers'] {
    return Object.fromEntries(
      Object.entries(this.applied.servers)
        .filter(([other]) => other !== id)
        .map(([other, server]) => [other, server.config]),
    );
  }

  /** Servers (applied, and in the folder as last read) by id: whose credentials `auth status` lists. */
  knownServers(): Map<string, ServerSpec> {
    const out = new Map<string, ServerSpec>();
    for (const [id, server] of Object.entries(this.applied.servers)) out.set(id, server.config.spec);
    for (const [id, config] of Object.entries(this.folder.last?.desired.servers ?? {})) out.set(id, config.spec);
    return out;
  }

  private async applyVerified(
    request: ApplyRequest,
    plan: Plan,
    diagnostics: Diagnostic[],
    digest: string,
    verifications: CheckedServer[],
    opened: Map<string, OpenedImap>,
    revisionLookup: Promise<string | null>,
    identities: SecretIdentities,
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
        `${failed.size} server(s) failed verification; nothing changed (use --save-failed-as-disabled to ` +
          'apply the rest)',
        { plan, diagnostics, verifications },
      );
    }

    const revision = await revisionLookup;
    const next = nextState(this.applied, plan, failed, revision);
    // the queue tables of PostgreSQL sinks exist before any loop delivers into them
    const tables = new Set(
      Object.values(next.servers).flatMap((s) => (s.config.flow ? [queueTableOf(s.config.flow)] : [])),
    );
    for (const table of tables) if (table !== null) await this.options.sinks.prepareQueue(table);
    await this.persist({
      appliedAt: new Date().toISOString(),
      revision,
      desiredDigest: digest,
      state: next,
      identities: { keyId: this.identities.keyId, bindings: nextIdentityBindings(identities, next, plan, failed) },
    });
    this.pendingApproval.clear();
    this.drift = false;
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
