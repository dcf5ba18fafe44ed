/**
 * Reconcile benchmark (`npm run bench:reconcile`): 200 IMAP + 200 SMTP servers on a local Dovecot (one user each,
 * storage folder created) and a local SMTP server. Measures, through the real CLI and daemon:
 *   - `plan --state empty` of the folder,
 *   - a full `apply` (every server verified against the real servers),
 *   - a no-op re-apply,
 *   - watch mode: from saving one changed file (a connection change of one server) to that server's loop running again.
 * Goals: no-op apply < 1 s; one-file change → loop restarted < 2 s. Prints the figures and appends a `## reconcile`
 * section to BENCHMARKS.md (MAILCTL_BENCH_NO_APPEND=1: printed only). Bounded: a watchdog ends the run after 10 minutes.
 */
import { rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startDovecot } from '../test/harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../test/harness/fixtures.js';
import { cli, createWorkspace, eventually, startDaemon, type DaemonProcess } from '../test/harness/mailctl.js';
import { startSmtpServer } from '../test/harness/smtp.js';
import { appendToBenchmarks, formatMs, giveUpAfter, inBatches, median } from './common.js';

const N = Number(process.env.MAILCTL_BENCH_SERVERS ?? 200);
const WATCH_RUNS = 5;

giveUpAfter('bench:reconcile', 10);

const user = (i: number) => `user${i}@example.com`;
const pass = (i: number) => `pw-${i}-bench`;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return [value, ms(t0)];
}

const users = Object.fromEntries(Array.from({ length: N }, (_, i) => [user(i), pass(i)]));
console.log(`bench:reconcile: ${N} IMAP + ${N} SMTP servers; starting Dovecot and the SMTP server...`);
const dovecot = await startDovecot({ users });
const smtp = await startSmtpServer({ ca: dovecot.ca, users });
const ws = await createWorkspace();
let daemon: DaemonProcess | undefined;
try {
  const ids = Array.from({ length: N }, (_, i) => i);
  await inBatches(ids, 20, (i) => dovecot.createFolder(user(i), 'ContactStorage'));
  await dovecot.createFolder(user(0), 'Archive');
  const imapRef: string[] = [];
  const smtpRef: string[] = [];
  await inBatches(ids, 50, async (i) => {
    imapRef[i] = `\${file:${await ws.writeSecret(`imap-${i}`, pass(i))}}`;
    smtpRef[i] = `\${file:${await ws.writeSecret(`smtp-${i}`, pass(i))}}`;
  });
  const imap = (i: number, storageFolder = 'ContactStorage') =>
    imapYaml({
      shortName: `s${i}`,
      user: user(i),
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: imapRef[i]!,
      storageFolder,
    });
  await ws.writeServer('flow.yaml', flowYaml());
  await inBatches(ids, 50, async (i) => {
    await ws.writeServer(`imap-s${i}.yaml`, imap(i));
    await ws.writeServer(
      `smtp-s${i}.yaml`,
      smtpYaml({ shortName: `s${i}`, user: user(i), port: smtp.port, caFile: smtp.caFile, password: smtpRef[i]! }),
    );
  });

  const [plan, planMs] = await timed(() =>
    cli(['plan', '--dir', ws.dir, '--state', 'empty', '--detailed-exitcode'], ws.env),
  );
  if (plan.code !== 2)
    throw new Error(`plan --state empty exited ${plan.code}:\n${plan.stderr}${plan.stdout.slice(-2000)}`);
  console.log(`plan --state empty (${2 * N} to create): ${formatMs(planMs)}`);

  daemon = await startDaemon(ws, ['--no-watch', '--log-level', 'warn']);
  const [full, fullMs] = await timed(() => cli(['apply', '--dir', ws.dir], ws.env));
  if (full.code !== 0) throw new Error(`full apply exited ${full.code}:\n${full.stderr}${full.stdout.slice(-3000)}`);
  const verified = (full.stdout.match(/Connection succeeded/g) ?? []).length;
  console.log(`full apply (${verified} servers verified): ${formatMs(fullMs)}`);
  const d1 = daemon;
  await eventually(
    async () =>
      (await d1.api('GET', '/v1/status')).body.servers.filter((s: { state: string }) => s.state === 'running')
        .length ===
      2 * N,
    120_000,
    'every loop running',
  );

  const noop: number[] = [];
  for (let k = 0; k < 3; k++) {
    const [r, t] = await timed(() => cli(['apply', '--dir', ws.dir], ws.env));
    if (r.code !== 0 || !/no-changes/.test(r.stdout)) throw new Error(`no-op apply: ${r.code} ${r.stdout.slice(-500)}`);
    noop.push(t);
  }
  console.log(`no-op re-apply (median of 3, CLI process included): ${formatMs(median(noop))}`);
  // The daemon's share: the same no-op reconcile asked for over the API (no CLI start, no client-side folder load).
  const noopDaemon: number[] = [];
  for (let k = 0; k < 3; k++) {
    const [r, t] = await timed(() => d1.api('POST', '/v1/apply', { trigger: 'bench' }));
    if (r.status !== 200 || r.body.outcome !== 'no-changes')
      throw new Error(`no-op reconcile over the API: ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`);
    noopDaemon.push(t);
  }
  console.log(`no-op reconcile inside the daemon (POST /v1/apply, median of 3): ${formatMs(median(noopDaemon))}`);
  const [, validateMs] = await timed(() => cli(['validate', '--dir', ws.dir], ws.env));
  const [, startMs] = await timed(() => cli(['--version'], ws.env));
  console.log(
    `for comparison: mailctl validate of the folder ${formatMs(validateMs)}, mailctl --version ${formatMs(startMs)}`,
  );

  // Watch mode: the same state folder, resumed by a watching daemon.
  await daemon.stop('SIGTERM');
  daemon = await startDaemon(ws, ['--log-level', 'warn']);
  const d2 = daemon;
  const imap0 = async () =>
    (await d2.api('GET', '/v1/status')).body.servers.find((s: { id: string }) => s.id === 'imap/s0') as {
      state: string;
      since: string | null;
    };
  await eventually(async () => (await imap0())?.state === 'running', 60_000, 'imap/s0 running after resume');
  const watchRuns: number[] = [];
  for (let k = 0; k < WATCH_RUNS; k++) {
    const before = await imap0();
    const yaml = imap(0, k % 2 === 0 ? 'Archive' : 'ContactStorage'); // storageFolder: a connection change (restart)
    const tmp = path.join(ws.dir, '.imap-s0.yaml.tmp');
    await writeFile(tmp, yaml);
    const t0 = process.hrtime.bigint();
    await rename(tmp, path.join(ws.dir, 'imap-s0.yaml')); // an editor's atomic save
    for (;;) {
      const now = await imap0();
      if (now?.state === 'running' && now.since !== before.since) break;
      if (ms(t0) > 30_000) throw new Error('imap/s0 did not restart within 30 s of the save');
      await new Promise((r) => setTimeout(r, 10));
    }
    watchRuns.push(ms(t0));
  }
  console.log(
    `watch: save one file → its loop running again (median of ${WATCH_RUNS}): ${formatMs(median(watchRuns))} (runs: ${watchRuns.map(formatMs).join(', ')})`,
  );

  const noopOk = median(noop) < 1000;
  const watchOk = median(watchRuns) < 2000;
  console.log(
    `goals: no-op apply < 1 s ${noopOk ? 'MET' : 'MISSED'}; one-file change → loop restarted < 2 s ${watchOk ? 'MET' : 'MISSED'}`,
  );

  const section = [
    '',
    '## reconcile',
    '',
    `\`npm run bench:reconcile\` — ${N} IMAP + ${N} SMTP servers on a local Dovecot (one user each, storage folder created) and a local smtp-server; ` +
      `${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'CPU'}. Times include starting the CLI process.`,
    '',
    '| step | time | goal |',
    '| --- | --- | --- |',
    `| \`plan --state empty\` (${2 * N} to create) | ${formatMs(planMs)} | |`,
    `| full \`apply\` (${verified} servers verified) | ${formatMs(fullMs)} | |`,
    `| no-op re-apply, \`mailctl apply\` end to end (median of 3) | ${formatMs(median(noop))} | < 1 s ${noopOk ? '✔' : '✘'} |`,
    `| — of which the daemon's no-op reconcile (POST /v1/apply, median of 3) | ${formatMs(median(noopDaemon))} | |`,
    `| — for comparison: \`mailctl validate\` of the folder / \`mailctl --version\` | ${formatMs(validateMs)} / ${formatMs(startMs)} | |`,
    `| watch: save one file (storageFolder change) → loop running again (median of ${WATCH_RUNS}) | ${formatMs(median(watchRuns))} | < 2 s ${watchOk ? '✔' : '✘'} |`,
    '',
  ].join('\n');
  await appendToBenchmarks('reconcile', section);
} finally {
  await daemon?.kill().catch(() => undefined);
  await smtp.stop();
  await dovecot.stop();
  await ws.cleanup();
}
