/**
 * A group of replicas on one private PostgreSQL and one Dovecot, as the fault tests share it: `mailboxes` users (each
 * with its storage folder) polled into the store's queue table, replicas started as real processes (each with its own
 * state folder, the same folder, token and credentials key), a stream of messages delivered while a fault happens, and
 * the checks every fault test makes: each Message-ID exactly once in its queue, every message \Seen, duplicates in
 * the storage folders counted, and the evidence of fencing — every queue row says which replica committed it under
 * which epoch of the mailbox's lease, so no (mailbox, epoch) may have two replicas, and per mailbox the epochs may
 * only grow in commit order (a stale owner's write accepted after a newer owner's would break that).
 *
 *   const group = await startRunningGroup({ replicas: 3 });
 *   const ids = await group.stream(200, () => group.replica('r2').daemon.kill());
 *   assertGroupReport('SIGKILL', await group.check(ids));
 */
import path from 'node:path';
import * as assert from 'uvu/assert';
import { customerMessage, imapYaml, postgresFlowYaml } from './fixtures.js';
import { cli, eventually, startDaemon, type DaemonProcess, type Workspace } from './mailctl.js';
import { startMailStack, type MailStack, type MailStackOptions } from './stack.js';

export const STORAGE = 'ContactStorage';

export interface GroupOptions {
  mailboxes?: number;
  /** `--lease-ttl` (seconds). */
  ttlS?: number;
  /** Extra flags for every replica. */
  args?: string[];
  /** Every IMAP server's pollSchedule (default every 10 s). */
  pollSchedule?: string;
  dovecot?: MailStackOptions['dovecot'];
  postgres?: MailStackOptions['postgres'];
}

export interface Replica {
  id: string;
  daemon: DaemonProcess;
  ws: Workspace;
}

/** What the checks found (duplicates in the storage folders are counted and reported, expected 0). */
export interface GroupReport {
  messages: number;
  missing: string[];
  twice: string[];
  unseen: number;
  storageDuplicates: number;
  storageMissing: number;
  /** (mailbox, epoch) pairs committed by more than one replica. */
  sharedEpochs: string[];
  /** Mailboxes where a lower epoch committed after a higher one. */
  epochRegressions: string[];
  /** Epochs seen per mailbox (handovers show as more than one). */
  epochs: number;
  fencedWrites: number;
}

export interface Group {
  stack: MailStack;
  users: string[];
  ttlS: number;
  replicas: Map<string, Replica>;
  replica(id: string): Replica;
  /** Starts replica `id` (a new process; its state folder is kept across restarts). */
  start(id: string, args?: string[]): Promise<Replica>;
  /** `mailctl apply` through replica `id`'s API. */
  apply(id: string): Promise<void>;
  /** The IMAP servers whose loop each live replica runs now (by its own /v1/status). */
  running(): Promise<Map<string, Set<string>>>;
  /** Every enabled server's loop running somewhere in the group. */
  allRunning(timeoutMs?: number): Promise<void>;
  /** Delivers `count` messages over the mailboxes, `fault` running once a third of them were delivered. */
  stream(count: number, fault: () => Promise<void>): Promise<string[]>;
  /** Waits until every message is in the queue and \Seen, then checks (asserting the fencing evidence). */
  check(ids: string[], timeoutMs?: number): Promise<GroupReport>;
  /** Fenced writes counted by the live replicas' /metrics. */
  fencedWrites(): Promise<number>;
  /** A mark in the replicas' logs: called later, it gives what the replicas in the group then logged since. */
  logMark(): () => LogEntry[];
  stop(): Promise<void>;
}

/** A line of a replica's JSON log (pino), with the replica's id. */
export interface LogEntry {
  replica: string;
  level: number;
  time: number;
  msg: string;
  [field: string]: unknown;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let seq = 0;

/** A group with replicas r1…rN started, the folder applied through r1, and every loop running. */
export async function startRunningGroup(options: GroupOptions & { replicas: number }): Promise<Group> {
  const group = await startGroup(options);
  try {
    for (let i = 1; i <= options.replicas; i++) await group.start(`r${i}`);
    await group.apply('r1');
    await group.allRunning();
    return group;
  } catch (err) {
    await group.stop();
    throw err;
  }
}

export async function startGroup(options: GroupOptions = {}): Promise<Group> {
  const count = options.mailboxes ?? 20;
  const ttlS = options.ttlS ?? 3;
  const users = Array.from({ length: count }, (_, i) => `box${String(i + 1).padStart(2, '0')}@example.com`);
  const stack = await startMailStack({
    users: Object.fromEntries(users.map((u, i) => [u, `pw-${i}-${u}`])),
    store: 'postgres',
    ...(options.dovecot && { dovecot: options.dovecot }),
    ...(options.postgres && { postgres: options.postgres }),
  });
  const { ws, dovecot } = stack;
  await ws.writeServer('flow.yaml', postgresFlowYaml('main'));
  for (const [i, user] of users.entries()) {
    await ws.writeServer(
      `imap-${i}.yaml`,
      imapYaml({
        shortName: `box${i + 1}`,
        user,
        flow: 'main',
        port: dovecot.ports.imap,
        caFile: dovecot.caFile,
        password: await stack.ref(user),
        storageFolder: STORAGE,
        pollSchedule: options.pollSchedule ?? '*/10 * * * * *',
      }),
    );
  }
  const replicas = new Map<string, Replica>();
  const kept = new Map<string, Workspace>();
  const group: Group = {
    stack,
    users,
    ttlS,
    replicas,
    replica(id) {
      const r = replicas.get(id);
      if (!r) throw new Error(`no replica ${id}`);
      return r;
    },
    async start(id, args = []) {
      let rws = kept.get(id);
      if (!rws) {
        const stateDir = path.join(ws.root, `state-${id}`);
        rws = { ...ws, stateDir, env: { ...ws.env, MAILCTL_STATE_DIR: stateDir } };
        kept.set(id, rws);
      }
      const daemon = await startDaemon(
        rws,
        [...stack.storeArgs, '--replica-id', id, '--lease-ttl', String(ttlS), ...(options.args ?? []), ...args],
        stack.storeEnv,
      );
      const replica = { id, daemon, ws: rws };
      replicas.set(id, replica);
      return replica;
    },
    async apply(id) {
      const r = await cli(['apply', '--dir', ws.dir], group.replica(id).ws.env);
      assert.is(r.code, 0, r.stdout + r.stderr);
    },
    async running() {
      const live = [...replicas.values()].filter((r) => r.daemon.child.exitCode === null && !r.daemon.child.signalCode);
      const byReplica = new Map<string, Set<string>>();
      for (const r of live) {
        const s = await r.daemon.api('GET', '/v1/status');
        // each replica's status shows the whole group (others' loops by their last snapshot, also a killed
        // replica's until its leases expire): count only the loops each runs itself
        const servers = s.body.servers as { id: string; state: string; owner?: string }[];
        const own = servers.filter((x) => x.state === 'running' && x.owner === r.id && x.id.startsWith('imap/'));
        byReplica.set(r.id, new Set(own.map((x) => x.id)));
      }
      return byReplica;
    },
    async allRunning(timeoutMs = 30_000) {
      await eventually(
        async () => new Set([...(await group.running()).values()].flatMap((ids) => [...ids])).size === users.length,
        timeoutMs,
        `all ${users.length} loops running`,
      );
    },
    async stream(total, fault) {
      const ids: string[] = [];
      let faulted: Promise<void> | null = null;
      for (let i = 0; i < total; i++) {
        const user = users[i % users.length]!;
        const id = `<group-${++seq}-${Date.now()}@test.example>`;
        await dovecot.deliver(
          user,
          customerMessage({ to: user, id, subject: `Question ${seq}`, body: `Message ${seq}` }),
        );
        ids.push(id);
        if (i === Math.floor(total / 3)) faulted = fault();
        await sleep(20);
      }
      await faulted;
      return ids;
    },
    async check(ids, timeoutMs = 90_000) {
      const want = new Set(ids);
      const rowsOf = async () =>
        (await stack.pg.admin(
          `SELECT message_id, server, lease_epoch::int AS epoch, delivered_by, xmin::text::bigint AS tx
           FROM mailctl.inbound_messages`,
          stack.pg.database,
        )) as { message_id: string; server: string; epoch: number; delivered_by: string; tx: string }[];
      const unseenOf = async () => {
        let unseen = 0;
        for (const user of users)
          unseen += (await dovecot.listMessages(user)).filter(
            (m) => want.has(m.messageId ?? '') && !m.flags.includes('\\Seen'),
          ).length;
        return unseen;
      };
      await eventually(
        async () => new Set((await rowsOf()).map((r) => r.message_id)).size >= want.size && (await unseenOf()) === 0,
        timeoutMs,
        'every message in the queue and \\Seen',
      );
      const rows = await rowsOf();
      const times = new Map<string, number>();
      for (const r of rows) times.set(r.message_id, (times.get(r.message_id) ?? 0) + 1);
      let storageDuplicates = 0;
      for (const user of users) {
        const stored = new Map<string, number>();
        for (const m of await dovecot.listMessages(user, STORAGE))
          stored.set(m.messageId ?? '', (stored.get(m.messageId ?? '') ?? 0) + 1);
        for (const id of ids) {
          const n = stored.get(id);
          if (n === undefined) continue;
          if (n > 1) storageDuplicates += n - 1;
        }
      }
      const storageMissing = ids.length - (await countStored(stack, users, want));
      const byEpoch = new Map<string, Set<string>>();
      const byServer = new Map<string, { tx: bigint; epoch: number }[]>();
      for (const r of rows) {
        const key = `${r.server}@${r.epoch}`;
        byEpoch.set(key, (byEpoch.get(key) ?? new Set()).add(r.delivered_by));
        byServer.set(r.server, [...(byServer.get(r.server) ?? []), { tx: BigInt(r.tx), epoch: r.epoch }]);
      }
      const epochRegressions: string[] = [];
      for (const [server, list] of byServer) {
        list.sort((a, b) => (a.tx < b.tx ? -1 : a.tx > b.tx ? 1 : 0));
        for (let i = 1; i < list.length; i++)
          if (list[i]!.epoch < list[i - 1]!.epoch) {
            epochRegressions.push(`${server}: epoch ${list[i - 1]!.epoch} then ${list[i]!.epoch}`);
            break;
          }
      }
      return {
        messages: ids.length,
        missing: ids.filter((id) => !times.has(id)),
        twice: ids.filter((id) => (times.get(id) ?? 0) > 1),
        unseen: await unseenOf(),
        storageDuplicates,
        storageMissing,
        sharedEpochs: [...byEpoch].filter(([, who]) => who.size > 1).map(([k, who]) => `${k}: ${[...who].join(', ')}`),
        epochRegressions,
        epochs: byEpoch.size,
        fencedWrites: await group.fencedWrites(),
      };
    },
    async fencedWrites() {
      let total = 0;
      for (const r of replicas.values()) {
        if (r.daemon.child.exitCode !== null || r.daemon.child.signalCode !== null) continue;
        const text = await fetch(`${r.daemon.url}/metrics`)
          .then((res) => res.text())
          .catch(() => '');
        const m = /^mailctl_fenced_writes_total\{[^}]*\} (\d+)/m.exec(text);
        total += m ? Number(m[1]) : 0;
      }
      return total;
    },
    logMark() {
      const from = new Map([...replicas.values()].map((r) => [r.id, r.daemon.output().length]));
      return () =>
        [...replicas.values()].flatMap((r) =>
          r.daemon
            .output()
            .slice(from.get(r.id) ?? 0)
            .split('\n')
            .flatMap((line) => {
              try {
                return [{ ...(JSON.parse(line) as LogEntry), replica: r.id }];
              } catch {
                return []; // not a log line, or the last one still being written
              }
            }),
        );
    },
    async stop() {
      await Promise.all([...replicas.values()].map((r) => r.daemon.kill().catch(() => undefined)));
      await stack.stop();
    },
  };
  return group;
}

async function countStored(stack: MailStack, users: string[], want: Set<string>): Promise<number> {
  const found = new Set<string>();
  for (const user of users)
    for (const m of await stack.dovecot.listMessages(user, STORAGE))
      if (want.has(m.messageId ?? '')) found.add(m.messageId!);
  return found.size;
}

/** The assertions every fault test makes, and one line of figures for the log. */
export function assertGroupReport(what: string, report: GroupReport): void {
  console.log(
    `  ${what}: ${report.messages} messages, ${report.epochs} (mailbox, epoch) pairs, storage duplicates ${report.storageDuplicates}, fenced writes ${report.fencedWrites}`,
  );
  assert.equal(report.missing, [], 'every message in its queue');
  assert.equal(report.twice, [], 'no message twice in its queue');
  assert.is(report.unseen, 0, 'every message \\Seen');
  assert.is(report.storageMissing, 0, 'every message in its storage folder');
  assert.is(report.storageDuplicates, 0, 'no duplicate in the storage folders');
  assert.equal(report.sharedEpochs, [], 'no mailbox worked by two replicas in one epoch');
  assert.equal(report.epochRegressions, [], 'no write of a stale owner accepted after a newer owner wrote');
}
