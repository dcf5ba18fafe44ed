/**
 * Soak benchmark (`npm run bench:soak`): 100,000 messages of ~1 KB through `POST /v1/outbound` of a real daemon to a
 * local smtp-server (no sent copies: the SMTP user has no IMAP server), after a warm-up of 5,000. Checks that nothing
 * grows with the mail: the daemon's memory (RSS, V8 heap from /metrics) and its outbox folder (batch files and the
 * journal, compacted while running) are sampled every 10 s and at the end, and compared with the end of the warm-up.
 * Prints the figures and appends a `## soak` section to BENCHMARKS.md (MAILCTL_BENCH_NO_APPEND=1: printed only).
 */
import os from 'node:os';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { smtpYaml } from '../test/harness/fixtures.js';
import { cli, createWorkspace, eventually, startDaemon, type DaemonProcess } from '../test/harness/mailctl.js';
import { startSmtpServer } from '../test/harness/smtp.js';
import { appendToBenchmarks, giveUpAfter, jsonPoster, kib, mib, rssOf } from './common.js';

const N = Number(process.env.MAILCTL_BENCH_MESSAGES ?? 100_000);
const WARM_UP = Math.min(5_000, N);
const CONCURRENCY = 50;
const SAMPLE_EVERY_MS = 10_000;
const AGENT = 'agent@example.com';
giveUpAfter('bench:soak', 40);

const body = (i: number) => `message ${i}\n${'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(17)}`; // ~1 KB
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

const poster = jsonPoster(CONCURRENCY);

async function postAll(daemon: DaemonProcess, from: number, n: number): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < from + n) {
        const i = next++;
        const r = await poster.post(`${daemon.url}/v1/outbound`, daemon.token, {
          from: AGENT,
          to: 'customer@example.org',
          subject: `soak ${i}`,
          text: body(i),
        });
        if (r.status !== 202) throw new Error(`message ${i}: ${r.status} ${r.body}`);
      }
    }),
  );
}

interface Sample {
  at: number;
  rss: number;
  heap: number;
  outboxBytes: number;
  waiting: number;
}

const smtp = await startSmtpServer({ users: { [AGENT]: 'agent-pass' } });
const ws = await createWorkspace();
let received = 0;
// the test server keeps every message: count them and let them go, or the bench process would hold 100 MB
const drainReceived = setInterval(() => (received += smtp.messages.splice(0).length), 200);
try {
  const ref = `\${file:${await ws.writeSecret('agent', 'agent-pass')}}`;
  await ws.writeServer(
    'smtp.yaml',
    smtpYaml({ shortName: 'agent', user: AGENT, port: smtp.port, caFile: smtp.caFile, password: ref }),
  );
  const daemon = await startDaemon(ws, ['--no-watch', '--log-level', 'warn']);
  const applied = await cli(['apply', '--dir', ws.dir], ws.env);
  if (applied.code !== 0) throw new Error(applied.stdout + applied.stderr);
  const pid = daemon.child.pid!;
  const outboxDir = path.join(ws.stateDir, 'outbox');
  const waiting = async () => (await daemon.api('GET', '/v1/outbound?limit=0')).body.size as number;
  const sample = async (t0: bigint): Promise<Sample> => {
    const metrics = (await daemon.api('GET', '/metrics', undefined, null)).body as string;
    let outboxBytes = 0;
    for (const name of await readdir(outboxDir))
      outboxBytes += (await stat(path.join(outboxDir, name)).catch(() => ({ size: 0 }))).size;
    return {
      at: seconds(t0),
      rss: await rssOf(pid),
      heap: Number(/^mailctl_nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1] ?? NaN),
      outboxBytes,
      waiting: await waiting(),
    };
  };
  const drained = () => eventually(async () => (await waiting()) === 0, 600_000, 'outbox empty');
  const settle = () => new Promise((r) => setTimeout(r, 5_000));

  const w0 = process.hrtime.bigint();
  await postAll(daemon, 0, WARM_UP);
  await drained();
  await settle();
  const base = await sample(w0);

  const t0 = process.hrtime.bigint();
  const samples: Sample[] = [];
  let sampling = Promise.resolve();
  const timer = setInterval(() => {
    sampling = sampling.then(async () => void samples.push(await sample(t0)));
  }, SAMPLE_EVERY_MS);
  await postAll(daemon, WARM_UP, N);
  const acceptedIn = seconds(t0);
  await drained();
  const total = seconds(t0);
  clearInterval(timer);
  await sampling;
  await settle();
  const end = await sample(t0);
  received += smtp.messages.splice(0).length;
  poster.close();
  await daemon.stop();

  const peak = (key: 'rss' | 'heap' | 'outboxBytes') => Math.max(end[key], ...samples.map((s) => s[key]));
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  const rows = [
    `| throughput, API to SMTP server (all ${N} sent) | ${(N / total).toFixed(0)} msg/s (${total.toFixed(0)} s; accepted in ${acceptedIn.toFixed(0)} s) |`,
    `| daemon RSS: after the warm-up → peak → end | ${mib(base.rss)} → ${mib(peak('rss'))} → ${mib(end.rss)} (end ${ratio(end.rss, base.rss)}) |`,
    `| daemon V8 heap used: after the warm-up → peak → end | ${mib(base.heap)} → ${mib(peak('heap'))} → ${mib(end.heap)} (end ${ratio(end.heap, base.heap)}) |`,
    `| outbox folder (batch files + journal): after the warm-up → peak → end | ${kib(base.outboxBytes)} → ${kib(peak('outboxBytes'))} → ${kib(end.outboxBytes)} |`,
    `| most messages waiting at a sample | ${Math.max(...samples.map((s) => s.waiting), 0)} |`,
  ];
  const text = [
    '',
    '## soak',
    '',
    `\`npm run bench:soak\` — ${N} messages of ~1 KB after a warm-up of ${WARM_UP}, ${CONCURRENCY} concurrent API clients, local smtp-server (STARTTLS), no sent copies; samples every ${SAMPLE_EVERY_MS / 1000} s; ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}. Checked: ${received} received by the SMTP server (${N + WARM_UP} sent).`,
    '',
    '| what | figure |',
    '| --- | --- |',
    ...rows,
    '',
  ].join('\n');
  console.log(text);
  if (received !== N + WARM_UP) throw new Error(`the SMTP server received ${received}, not ${N + WARM_UP}`);
  await appendToBenchmarks('soak', text);
} finally {
  clearInterval(drainReceived);
  await smtp.stop();
  await ws.cleanup();
}
process.exit(0);
