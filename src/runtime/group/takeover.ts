/**
 * Getting ready to hold a mailbox before its lease can be taken. Every member announces each heartbeat; one silent
 * for a third of its TTL (when its next renewal was due) plus a margin is overdue: probably killed, frozen or cut
 * off. Its leases cannot be taken before they expire (a whole TTL after its last renewal), but the sessions the new
 * owners will need can be opened meanwhile: connecting, logging in and selecting the inbox change nothing on the mail
 * server. The same goes for a mailbox another member is handing over (a replica joined or left). When the lease is
 * taken the loop starts on its prepared session, so a failover costs the TTL and not also a login storm of hundreds of
 * sessions. A silent member that speaks again was only slow: the sessions are closed. Meanwhile an account has at
 * most one session more than usual.
 */
import type { Logger } from 'pino';
import type { ImapServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import type { PeerBeat } from '../../store/group-ports.js';
import { discardOpened, type OpenedImap } from '../loops/imap-loop.js';
import type { Supervisor } from '../loops/supervisor.js';

/** How long past its due renewal a member's silence must last to count as overdue (a slow statement is not one). */
export const OVERDUE_MARGIN_MS = 1000;

/** Whether a member's silence has lasted past its due renewal and the margin (by the store's clock). */
export const isOverdue = (peer: PeerBeat): boolean => peer.silentS * 1000 > overdueAfterMs(peer.ttlS);

const overdueAfterMs = (ttlS: number): number => (ttlS * 1000) / 3 + OVERDUE_MARGIN_MS;

/**
 * One timer per other member, set for when it becomes overdue unless heard from again (its heartbeat's notice resets
 * it). `onOverdue` is called when one fires: the caller asks the store (a heartbeat), which decides by its own clock.
 */
export class SilenceWatch {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly ttlS = new Map<string, number>();

  constructor(private readonly onOverdue: () => void) {}

  /** What a heartbeat said about the other members (those missing left the group). */
  saw(peers: readonly PeerBeat[]): void {
    const live = new Set(peers.map((p) => p.id));
    for (const id of [...this.ttlS.keys()]) if (!live.has(id)) this.forget(id);
    for (const p of peers) {
      this.ttlS.set(p.id, p.ttlS);
      this.arm(p.id, overdueAfterMs(p.ttlS) - p.silentS * 1000);
    }
  }

  /** A member's heartbeat was announced: its silence starts again. */
  heard(id: string): void {
    const ttlS = this.ttlS.get(id);
    if (ttlS !== undefined) this.arm(id, overdueAfterMs(ttlS));
  }

  private arm(id: string, inMs: number): void {
    clearTimeout(this.timers.get(id));
    if (inMs <= 0) return void this.timers.delete(id); // overdue already: the heartbeat that said so acts on it
    this.timers.set(id, setTimeout(() => (this.timers.delete(id), this.onOverdue()), inMs).unref());
  }

  private forget(id: string): void {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
    this.ttlS.delete(id);
  }

  stop(): void {
    for (const id of [...this.ttlS.keys()]) this.forget(id);
  }
}

interface PreparedSession {
  /** The configuration it was opened with (a changed one makes it useless). */
  config: ServerConfig;
  abort: AbortController;
  /** Set once it is open. */
  opened: OpenedImap | null;
  /** It could not be opened: not tried again while it stays wanted (no login storm against a failing account). */
  failed: boolean;
  /** Set when it is no longer wanted: it is closed as soon as it opens. */
  dropped: boolean;
}

/**
 * Sessions opened for mailboxes this replica will hold soon (an overdue member's, one being handed over, or one whose
 * session apply's verification opened), each handed to its loop when the lease is taken.
 */
export class PreparedSessions {
  private readonly sessions = new Map<string, PreparedSession>();

  constructor(private readonly deps: { supervisor: Pick<Supervisor, 'openFor'>; log: Logger }) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Keeps a session open (or opening) for exactly the IMAP servers in `wanted`; closes the others. */
  keep(wanted: ReadonlyMap<string, ServerConfig>): void {
    for (const [id, s] of this.sessions) if (wanted.get(id) !== s.config) this.drop(id);
    let opening = 0;
    for (const [id, config] of wanted) {
      if (this.sessions.has(id) || config.spec.type !== 'imap') continue;
      this.open(id, config as ServerConfig & { spec: ImapServerSpec });
      opening += 1;
    }
    if (opening) this.deps.log.info({ servers: opening }, 'opening sessions for servers this replica will hold soon');
  }

  private open(id: string, config: ServerConfig & { spec: ImapServerSpec }): void {
    const session: PreparedSession = {
      config,
      abort: new AbortController(),
      opened: null,
      dropped: false,
      failed: false,
    };
    this.sessions.set(id, session);
    this.deps.supervisor.openFor(id, config, session.abort.signal).then(
      (opened) => {
        if (session.dropped) void discardOpened(opened).catch(() => undefined);
        else session.opened = opened;
      },
      // the loop will open its own and report what is wrong
      () => (session.failed = true),
    );
  }

  /** Keeps a session opened elsewhere (apply's verification) until the next `keep` says whether it is wanted. */
  adopt(id: string, config: ServerConfig, opened: OpenedImap): void {
    if (this.sessions.has(id)) this.drop(id);
    this.sessions.set(id, { config, abort: new AbortController(), opened, dropped: false, failed: false });
  }

  /** The open session for `id` if it was opened with `config` (handed to its loop), else undefined. */
  take(id: string, config: ServerConfig): OpenedImap | undefined {
    const session = this.sessions.get(id);
    if (!session?.opened || session.config !== config) {
      if (session) this.drop(id);
      return undefined;
    }
    this.sessions.delete(id);
    return session.opened;
  }

  private drop(id: string): void {
    const session = this.sessions.get(id)!;
    this.sessions.delete(id);
    session.dropped = true;
    session.abort.abort(new Error('the prepared session is no longer wanted'));
    if (session.opened) void discardOpened(session.opened).catch(() => undefined);
  }

  dropAll(): void {
    for (const id of [...this.sessions.keys()]) this.drop(id);
  }
}
