/**
 * Replicas benchmark (`npm run bench:scale`, issue #15): a group of daemons on one private PostgreSQL (the store and
 * the PostgreSQL sink) and one private Dovecot with one user and IMAP server per mailbox (test/harness/group.ts), the
 * servers on the default pollSchedule, the default lease TTL. In one run:
 *   1. start: three replica processes started, `mailctl apply`, until every mailbox's loop runs on some replica;
 *   2. idle: PostgreSQL statements per second of the daemons' role while nothing arrives, counted by
 *      pg_stat_statements (every statement the server executed for that role, utility ones such as BEGIN too);
 *   3. failover: SIGKILL of one replica (each in turn), until the last of its mailboxes runs on another replica; the
 *      killed one is started again (same state folder) and the shares settle before the next kill;
 *   4. a fourth replica joins: lease holders before and after (settled), against the ideal quarter and against what
 *      the ring (src/runtime/group/ring.ts) computes for the same members;
 *   5. inbound throughput: messages put into the inboxes at once (Maildir, as an MDA does) until all are rows in the
 *      queue table, for the group of three, then one replica alone on the same store (the other two stopped with
 *      SIGTERM), then the group again (the group's figure is over its two runs).
 * Prints the figures with their goals and appends a section to BENCHMARKS.md (MAILCTL_BENCH_NO_APPEND=1: it does not).
 * Sizes: --mailboxes (1000), --kills (5), --messages (10 per mailbox), --ttl (15, the daemon's default), --idle-s (60).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULT_POLL_SCHEDULE } from '../src/config/model.js';
import { accountOf, assign } from '../src/runtime/group/ring.js';
import { customerMessage } from '../test/harness/fixtures.js';
import { startGroup, type LogEntry } from '../test/harness/group.js';
import { eventually } from '../test/harness/mailctl.js';
import { appendToBenchmarks, formatMs, giveUpAfter, inBatches, median, percentile, sleep } from './common.js';

const { values: flags } = parseArgs({
  options: {
    mailboxes: { type: 'string', default: '1000' },
    kills: { type: 'string', default: '5' },
    messages: { type: 'string' },
    ttl: { type: 'string', default: '15' },
    'idle-s': { type: 'string', default: '60' },
  },
});
const MAILBOXES = Number(flags.mailboxes);
const KILLS = Number(flags.kills);
const MESSAGES = Number(flags.messages ?? 10 * MAILBOXES);
const TTL_S = Number(flags.ttl);
const IDLE_S = Number(flags['idle-s']);
const REPLICAS = ['r1', 'r2', 'r3'];
const JOINING = 'r4';
/** Generous bounds for waits whose duration is not the figure (apply and start of a thousand loops on 2 cores). */
const SETTLE_MS = 10 * 60_000;

giveUpAfter('bench:scale', 60);
const now = () => performance.now();
const loadAverage = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' / ');
const verdict = (ok: boolean) => (ok ? '✔' : '✘');

console.log(
  `bench:scale: ${REPLICAS.length} replicas, ${MAILBOXES} mailboxes, lease TTL ${TTL_S} s, ${KILLS} kills, ` +
    `${MESSAGES} messages; load average ${loadAverage()}; starting Dovecot and PostgreSQL...`,
);
const loadAtStart = loadAverage();
const group = await startGroup({
  mailboxes: MAILBOXES,
  ttlS: TTL_S,
  pollSchedule: DEFAULT_POLL_SCHEDULE,
  // no reconcile at start: `apply` is the step timed
  args: ['--no-watch'],
  dovecot: {
    // a thousand IMAP sessions and the connections apply verifies at the same time; only 128 processes of one user
    // get inotify here (fs.inotify.max_user_instances), the others notice new mail by this check
    extraConfig: 'service imap {\n  process_limit = 3000\n}\nmailbox_idle_check_interval = 1 secs\n',
  },
  postgres: { extraConfig: "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = top\n" },
});
const stopOnSignal = () => void group.stop().finally(() => process.exit(130));
process.once('SIGINT', stopOnSignal);
process.once('SIGTERM', stopOnSignal);

const { pg } = group.stack;
const sql = (text: string) => pg.admin(text, pg.database);

/** Replicas running `count` shares between them: every mailbox once, each live replica some. */
async function settled(count: number): Promise<Map<string, Set<string>>> {
  return eventually(
    async () => {
      const running = await group.running();
      const sizes = [...running.values()].map((s) => s.size);
      const union = new Set([...running.values()].flatMap((s) => [...s]));
      const ok =
        running.size === count &&
        sizes.every((n) => n > 0) &&
        union.size === MAILBOXES &&
        sizes.reduce((a, b) => a + b, 0) === MAILBOXES;
      return ok && running;
    },
    SETTLE_MS,
    `${MAILBOXES} loops running on ${count} replicas`,
  );
}

/** The current holder of each mailbox's lease. */
async function holders(): Promise<Map<string, string>> {
  const rows = await sql(`SELECT name, holder FROM mailctl.leases WHERE name LIKE 'imap/%' AND expires_at > now()`);
  return new Map(rows.map((r) => [r.name as string, r.holder as string]));
}

/** Warnings and errors among `logged`, counted by message. */
function warnings(logged: LogEntry[]): string {
  const counts = new Map<string, number>();
  for (const { msg } of logged.filter((e) => e.level >= 40)) counts.set(msg, (counts.get(msg) ?? 0) + 1);
  return [...counts].map(([msg, n]) => `${n} × ${msg}`).join('; ') || 'none';
}

/** What the survivors did about a takeover since `killedAt`, as `r1 +6.2 s opening 180, …` (their info lines). */
function takeoverSteps(logged: LogEntry[], killedAt: number): string {
  const wording: [RegExp, string][] = [
    [/opening sessions for servers/, 'opening sessions for'],
    [/took over servers/, 'took the leases of'],
    [/started on sessions opened in advance/, 'started loops on prepared sessions:'],
  ];
  const stepOf = (e: LogEntry) => wording.find(([re]) => re.test(e.msg))?.[1];
  return logged
    .filter(stepOf)
    .sort((x, y) => x.time - y.time)
    .map((e) => `${e.replica} +${((e.time - killedAt) / 1000).toFixed(1)} s ${stepOf(e)} ${Number(e.servers)}`)
    .join(', ');
}

async function stopReplica(id: string): Promise<void> {
  await group.replica(id).daemon.stop('SIGTERM');
  group.replicas.delete(id);
}

const rows: [string, string, string][] = [];
const notes: string[] = [];
const report = (measure: string, figure: string, goal = '') => {
  rows.push([measure, figure, goal]);
  console.log(`  ${measure}: ${figure}${goal ? `  [${goal}]` : ''}`);
};

try {
  // ---------------------------------------------------------------- 1. start
  const t0 = now();
  await Promise.all(REPLICAS.map((id) => group.start(id)));
  const listeningMs = now() - t0;
  const applyAt = now();
  await group.apply('r1');
  const applyMs = now() - applyAt;
  await settled(REPLICAS.length);
  const startMs = now() - t0;
  report(
    `start → \`apply\` → all ${MAILBOXES} loops running`,
    `${formatMs(startMs)} (listening ${formatMs(listeningMs)}, apply ${formatMs(applyMs)})`,
  );

  // ---------------------------------------------------------------- 2. idle statements
  await sleep(TTL_S * 1000); // the first polls and a full round of heartbeats over
  await sql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const calls = async () =>
    new Map(
      (
        await sql(
          `SELECT queryid::text AS id, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query, calls::int AS calls
           FROM pg_stat_statements WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = '${pg.user}')`,
        )
      ).map((r) => [r.id as string, { query: r.query as string, calls: r.calls as number }]),
    );
  const before = await calls();
  const idleAt = now();
  await sleep(IDLE_S * 1000);
  const after = await calls();
  const idleS = (now() - idleAt) / 1000;
  const delta = [...after]
    .map(([id, { query, calls: n }]) => ({ query, n: n - (before.get(id)?.calls ?? 0) }))
    .filter((d) => d.n > 0)
    .sort((a, b) => b.n - a.n);
  const statements = delta.reduce((a, d) => a + d.n, 0);
  const perThousand = ((statements / idleS) * 1000) / MAILBOXES;
  report(
    `idle: statements/s per 1,000 mailboxes (${statements} in ${idleS.toFixed(0)} s)`,
    perThousand.toFixed(2),
    `≤ 5 ${verdict(perThousand <= 5)}`,
  );
  for (const d of delta) notes.push(`idle: ${d.n} × \`${d.query.trim()}\``);

  // ---------------------------------------------------------------- 3. failover after SIGKILL
  const failovers: number[] = [];
  const takeovers: number[] = [];
  for (let k = 0; k < KILLS; k++) {
    const victim = REPLICAS[k % REPLICAS.length]!;
    const orphaned = [...(await group.running()).get(victim)!];
    const loggedSince = group.logMark();
    const killedAt = Date.now();
    await group.replica(victim).daemon.kill();
    group.replicas.delete(victim);
    await eventually(
      async () => {
        const running = new Set([...(await group.running()).values()].flatMap((s) => [...s]));
        return orphaned.every((id) => running.has(id));
      },
      TTL_S * 1000 + 120_000,
      `the ${orphaned.length} mailboxes of ${victim} running elsewhere`,
    );
    failovers.push(Date.now() - killedAt);
    const [taken] = await sql(
      `SELECT (extract(epoch FROM max(acquired_at)) * 1000)::float8 AS at FROM mailctl.leases
       WHERE name = ANY('{${orphaned.map((id) => `"${id}"`).join(',')}}'::text[])`,
    );
    takeovers.push((taken!.at as number) - killedAt);
    console.log(
      `  kill ${k + 1}: ${victim} (${orphaned.length} mailboxes) → leases taken after ` +
        `${formatMs(takeovers.at(-1)!)}, last loop running after ${formatMs(failovers.at(-1)!)}; ` +
        `the survivors' warnings: ${warnings(loggedSince())}`,
    );
    const steps = takeoverSteps(loggedSince(), killedAt);
    console.log(`    ${steps}`);
    notes.push(`kill ${k + 1} (${victim}, ${orphaned.length} mailboxes): ${steps}`);
    await group.start(victim);
    await settled(REPLICAS.length);
  }
  const goalMs = (TTL_S + 3) * 1000;
  const p95 = percentile(failovers, 95);
  report(
    `failover: SIGKILL → last orphaned loop running, p50 / p95 of ${KILLS}`,
    `${formatMs(median(failovers))} / ${formatMs(p95)}`,
    `p95 ≤ TTL + 3 s = ${TTL_S + 3} s ${verdict(p95 <= goalMs)}`,
  );
  report('— each kill', failovers.map(formatMs).join(', '));
  report(
    '— SIGKILL → the last of its leases taken (database clock), p50 / p95',
    `${formatMs(median(takeovers))} / ${formatMs(percentile(takeovers, 95))}`,
  );

  // ---------------------------------------------------------------- 4. a fourth replica joins
  const holdersBefore = await holders();
  const joinAt = now();
  await group.start(JOINING);
  await settled(REPLICAS.length + 1);
  const joinMs = now() - joinAt;
  await sleep((TTL_S * 1000) / 3 + 1000); // one more round of heartbeats: nothing moves any more
  await settled(REPLICAS.length + 1);
  const holdersAfter = await holders();
  const moved = [...holdersAfter].filter(([name, holder]) => holdersBefore.get(name) !== holder).length;
  const ideal = MAILBOXES / (REPLICAS.length + 1);
  const accounts = new Map(
    group.users.map((u, i) => [`imap/box${i + 1}`, accountOf({ host: 'localhost', auth: { user: u } })]),
  );
  const ringBefore = assign(REPLICAS, accounts);
  const ringAfter = assign([...REPLICAS, JOINING], accounts);
  const predicted = [...ringAfter].filter(([id, owner]) => ringBefore.get(id) !== owner).length;
  report(
    `join: lease holders changed when a 4th replica joined (ideal ${ideal})`,
    `${moved} = ${(moved / ideal).toFixed(2)}× the ideal`,
    `≤ 1.3× ${verdict(moved <= 1.3 * ideal)}`,
  );
  report("— moved by the ring's own assignment; settled after the 4th started", `${predicted}; ${formatMs(joinMs)}`);
  const shares = [...(await group.running())].map(([id, s]) => `${id} ${s.size}`).join(', ');
  notes.push(`shares with four replicas: ${shares}`);
  await stopReplica(JOINING);
  await settled(REPLICAS.length);

  // ---------------------------------------------------------------- 5. inbound throughput, group against one replica
  let run = 0;
  const inbound = async (label: string): Promise<number> => {
    const tag = `scale-${++run}-${Date.now()}`;
    const byUser = new Map<string, string[]>();
    for (let i = 0; i < MESSAGES; i++) {
      const user = group.users[i % MAILBOXES]!;
      const raw = customerMessage({
        to: user,
        id: `<${tag}-${i}@bench.example>`,
        subject: `Question ${i}`,
        body: `Message ${i} of run ${run}`,
      });
      byUser
        .set(user, byUser.get(user) ?? [])
        .get(user)!
        .push(raw);
    }
    const inQueue = async () =>
      (
        await sql(`SELECT count(DISTINCT message_id)::int AS n, count(*)::int AS rows
                  FROM mailctl.inbound_messages WHERE message_id LIKE '<${tag}-%'`)
      )[0] as { n: number; rows: number };
    const startedAt = now();
    await inBatches([...byUser], 50, ([user, raws]) => group.stack.dovecot.dropIntoInbox(user, raws));
    const putMs = now() - startedAt;
    await eventually(async () => (await inQueue()).n === MESSAGES, SETTLE_MS, `${MESSAGES} messages in the queue`);
    const ms = now() - startedAt;
    const { rows: count } = await inQueue();
    if (count !== MESSAGES) throw new Error(`${label}: ${count} rows for ${MESSAGES} messages`);
    const rate = MESSAGES / (ms / 1000);
    console.log(`  ${label}: ${rate.toFixed(0)} msg/s (${formatMs(ms)}; put into the inboxes in ${formatMs(putMs)})`);
    notes.push(`${label}: ${rate.toFixed(0)} msg/s (${formatMs(ms)}, of which putting them in ${formatMs(putMs)})`);
    return ms;
  };
  const group1 = await inbound(`inbound, group of ${REPLICAS.length}, run 1`);
  for (const id of REPLICAS.slice(1)) await stopReplica(id);
  await settled(1);
  const single = await inbound('inbound, one replica');
  for (const id of REPLICAS.slice(1)) await group.start(id);
  await settled(REPLICAS.length);
  const group2 = await inbound(`inbound, group of ${REPLICAS.length}, run 2`);
  const groupRate = (2 * MESSAGES) / ((group1 + group2) / 1000);
  const singleRate = MESSAGES / (single / 1000);
  report(
    `inbound: ${MESSAGES} messages → queue rows, group of ${REPLICAS.length} (over 2 runs)`,
    `${groupRate.toFixed(0)} msg/s`,
  );
  report('— one replica alone on the same store', `${singleRate.toFixed(0)} msg/s`);
  report('— group / one replica', `${(groupRate / singleRate).toFixed(2)}×`, 'report');
} finally {
  await group.stop();
}

const loadAtEnd = loadAverage();
const date = new Date().toISOString().slice(0, 10);
/** `text` in lines of at most `width` columns (BENCHMARKS.md keeps prose within 120). */
const wrap = (text: string, width = 120): string =>
  text
    .split(' ')
    .reduce<string[]>((lines, word) => {
      const last = lines.at(-1);
      if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`;
      else lines.push(word);
      return lines;
    }, [])
    .join('\n');
const section = [
  '',
  `## Replicas (#15): \`npm run bench:scale\``,
  '',
  wrap(
    `\`npm run bench:scale\` — ${REPLICAS.length} replicas (separate \`mailctl run\` processes) on one private ` +
      `PostgreSQL ${pg.version} (store and PostgreSQL sink), ${MAILBOXES} mailboxes (one Dovecot 2.3 user and IMAP ` +
      `server each, default pollSchedule \`${DEFAULT_POLL_SCHEDULE}\`), lease TTL ${TTL_S} s, ${KILLS} kills, ` +
      `${MESSAGES} messages; ${date}, Node ${process.version}, ${os.cpus().length} × ` +
      `${os.cpus()[0]?.model.trim() ?? '?'}, load average ${loadAtStart} at the start and ${loadAtEnd} at the end ` +
      "(1/5/15 min). Statements are counted by `pg_stat_statements` for the daemons' role (top-level statements, " +
      'utility ones such as BEGIN and LISTEN included).',
  ),
  '',
  '| measure | figure | goal |',
  '| --- | --- | --- |',
  ...rows.map((r) => `| ${r.join(' | ')} |`),
  '',
  'Notes:',
  '',
  ...notes.map((n) => wrap(`- ${n}`, 118).replace(/\n/g, '\n  ')),
  '',
].join('\n');
console.log(section);
await appendToBenchmarks(`Replicas (#15): \`npm run bench:scale\``, section);
process.exit(0);
