/**
 * Outbound benchmark (`npm run bench:outbound`): 2,000 messages of ~4 KB through `POST /v1/outbound` of a real daemon
 * to a local smtp-server, each with its durable outbox record and its sent copy APPENDed to a local Dovecot; measured
 * from the first POST until the outbox is empty (every message sent and copied). Once with the file store, once with
 * a PostgreSQL store (a private server with fsync on, as in production). Baseline in the same run: bare pooled
 * nodemailer (5 connections) sending the same messages to the same server. Goals: ≥ 0.5× the baseline; the PostgreSQL
 * store ≥ 0.8× the file store. Prints the figures and appends a `## outbound` section to BENCHMARKS.md
 * (MAILCTL_BENCH_NO_APPEND=1: printed only).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import nodemailer from 'nodemailer';
import { startDovecot } from '../test/harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../test/harness/fixtures.js';
import { cli, createWorkspace, eventually, startDaemon, type Workspace } from '../test/harness/mailctl.js';
import { startPostgres } from '../test/harness/postgres.js';
import { startSmtpServer } from '../test/harness/smtp.js';
import { appendToBenchmarks, cpuSecondsOf, giveUpAfter, jsonPoster } from './common.js';

const N = Number(process.env.MAILCTL_BENCH_MESSAGES ?? 2000);
const CONCURRENCY = 50;
const AGENT = 'agent@example.com';
/** The PostgreSQL run's mailbox: its own storage folder, so each run's sent copies are counted apart. */
const AGENT_PG = 'agent-pg@example.com';
giveUpAfter('bench:outbound', 10);

const body = (i: number) => `message ${i}\n${'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(70)}`; // ~4 KB
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const ownCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Calls `fn(0)` … `fn(n - 1)` with at most `size` calls in flight (the API clients of the load). */
async function withConcurrency(n: number, size: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: size }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const poster = jsonPoster(CONCURRENCY);

const users: Record<string, string> = { [AGENT]: 'agent-pass', [AGENT_PG]: 'agent-pg-pass' };
const dovecot = await startDovecot({ users });
for (const user of Object.keys(users)) await dovecot.createFolder(user, 'ContactStorage');
const smtp = await startSmtpServer({ ca: dovecot.ca, users });
// fsync on (the harness turns it off for tests): a commit costs what it costs in production
const pg = await startPostgres({ extraConfig: 'fsync = on\nfull_page_writes = on' });
const workspaces: Workspace[] = [];

interface Run {
  throughput: number;
  total: number;
  acceptedIn: number;
  daemonCpuMs: number;
  benchCpuMs: number;
  sent: number;
  copies: number;
}

/** The real daemon on a fresh workspace for `user`, with `store` (its `run` flags and environment). */
async function runMailctl(user: string, store: { args: string[]; env: NodeJS.ProcessEnv }): Promise<Run> {
  const ws = await createWorkspace();
  workspaces.push(ws);
  const ref = `\${file:${await ws.writeSecret('agent', users[user]!)}}`;
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer(
    'imap.yaml',
    imapYaml({
      shortName: 'agent',
      user,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: ref,
      storageFolder: 'ContactStorage',
    }),
  );
  await ws.writeServer(
    'smtp.yaml',
    smtpYaml({ shortName: 'agent', user, port: smtp.port, caFile: smtp.caFile, password: ref }),
  );
  const daemon = await startDaemon(ws, ['--no-watch', '--log-level', 'warn', ...store.args], store.env);
  const applied = await cli(['apply', '--dir', ws.dir], ws.env);
  if (applied.code !== 0) throw new Error(applied.stdout + applied.stderr);
  const before = smtp.messages.length;
  const daemonPid = daemon.child.pid!;
  const daemonCpu0 = await cpuSecondsOf(daemonPid);
  const cpu0 = ownCpuSeconds();
  const t0 = process.hrtime.bigint();
  // MAILCTL_BENCH_TRACE=1: once a second, how many the SMTP server received and how many are still in the outbox
  const trace =
    process.env.MAILCTL_BENCH_TRACE === '1'
      ? setInterval(
          () =>
            void daemon
              .api('GET', '/v1/outbound?limit=0')
              .then((r) =>
                console.error(
                  `${seconds(t0).toFixed(1)} s: received ${smtp.messages.length - before}, outbox ${r.body.size}`,
                ),
              ),
          1000,
        )
      : null;
  await withConcurrency(N, CONCURRENCY, async (i) => {
    const r = await poster.post(`${daemon.url}/v1/outbound`, daemon.token, {
      from: user,
      to: 'customer@example.org',
      subject: `outbound ${i}`,
      text: body(i),
    });
    if (r.status !== 202) throw new Error(r.body);
  });
  const acceptedIn = seconds(t0);
  // `limit=0`: the count only (polling the full list of 2,000 every 100 ms cost the daemon more CPU than its JSON was worth)
  await eventually(
    async () => (await daemon.api('GET', '/v1/outbound?limit=0')).body.size === 0,
    120_000,
    'outbox empty',
  );
  const total = seconds(t0);
  const daemonCpuMs = (((await cpuSecondsOf(daemonPid)) - daemonCpu0) / N) * 1000;
  const benchCpuMs = ((ownCpuSeconds() - cpu0) / N) * 1000;
  if (trace) clearInterval(trace);
  const sent = smtp.messages.length - before;
  const copies = (await dovecot.listMessages(user, 'ContactStorage')).length;
  await daemon.stop();
  return { throughput: N / total, total, acceptedIn, daemonCpuMs, benchCpuMs, sent, copies };
}

try {
  // baseline: bare pooled nodemailer, 5 connections
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: 5,
    host: 'localhost',
    port: smtp.port,
    secure: false,
    requireTLS: true,
    tls: { ca: smtp.caPem },
    auth: { user: AGENT, pass: 'agent-pass' },
  });
  await transport.verify();
  const t0 = process.hrtime.bigint();
  const cpu0 = ownCpuSeconds();
  await Promise.all(
    Array.from({ length: N }, (_, i) =>
      transport.sendMail({ from: AGENT, to: 'customer@example.org', subject: `baseline ${i}`, text: body(i) }),
    ),
  );
  const baseline = N / seconds(t0);
  // the bench process also runs the SMTP server: its CPU per message covers both ends
  const baselineCpuMs = ((ownCpuSeconds() - cpu0) / N) * 1000;
  transport.close();

  const file = await runMailctl(AGENT, { args: [], env: {} });
  const tokenFile = await workspaces[0]!.writeSecret('api-token-given', `${'t'.repeat(40)}\n`);
  const keyFile = await workspaces[0]!.writeSecret('credentials-key-given', randomBytes(32).toString('base64'));
  const postgres = await runMailctl(AGENT_PG, {
    args: ['--store', pg.url, '--token-file', tokenFile, '--credentials-key-file', keyFile],
    env: pg.env,
  });
  poster.close();
  const ratio = file.throughput / baseline;
  const pgRatio = postgres.throughput / file.throughput;
  const figures = (name: string, r: Run) => [
    `| mailctl on ${name}: API → durable outbox → pooled send → sent copy (all ${N} done) | ${r.throughput.toFixed(0)} msg/s (${r.total.toFixed(2)} s) | |`,
    `| — of which accepting all ${N} (202, durable) | ${r.acceptedIn.toFixed(2)} s (${(N / r.acceptedIn).toFixed(0)} msg/s) | |`,
    `| — CPU per message: mailctl daemon (API, outbox, compose, send, sent copy) | ${r.daemonCpuMs.toFixed(2)} ms | |`,
    `| — CPU per message: bench process (API client + SMTP server) | ${r.benchCpuMs.toFixed(2)} ms | |`,
  ];
  const rows = [
    `| bare pooled nodemailer, 5 connections (baseline; bench process CPU ${baselineCpuMs.toFixed(2)} ms per message) | ${baseline.toFixed(0)} msg/s | |`,
    ...figures('the file store', file),
    `| — ratio to the baseline | ${ratio.toFixed(2)}× | ≥ 0.5× ${ratio >= 0.5 ? '✔' : '✘'} |`,
    ...figures('a PostgreSQL store (fsync on)', postgres),
    `| — ratio to the file store | ${pgRatio.toFixed(2)}× | ≥ 0.8× ${pgRatio >= 0.8 ? '✔' : '✘'} |`,
  ];
  const text = [
    '',
    '## outbound',
    '',
    `\`npm run bench:outbound\` — ${N} messages of ~4 KB, ${CONCURRENCY} concurrent API clients, local smtp-server (STARTTLS) and Dovecot (sent copies), PostgreSQL ${pg.version} on the same machine; ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}. Checked: file store ${file.sent} received by the SMTP server, ${file.copies} sent copies; PostgreSQL store ${postgres.sent} received, ${postgres.copies} sent copies.`,
    '',
    '| path | throughput | goal |',
    '| --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
  console.log(text);
  await appendToBenchmarks('outbound', text);
} finally {
  await smtp.stop();
  await dovecot.stop();
  await pg.stop();
  for (const ws of workspaces) await ws.cleanup();
}
process.exit(0);
