/**
 * Outbound benchmark (`npm run bench:outbound`): 2,000 messages of ~4 KB through `POST /v1/outbound` of a real daemon
 * to a local smtp-server, each with its durable outbox record and its sent copy APPENDed to a local Dovecot; measured
 * from the first POST until the outbox is empty (every message sent and copied). Baseline in the same run: bare
 * pooled nodemailer (5 connections) sending the same messages to the same server. Goal ≥ 0.5× the baseline.
 * Prints the figures and appends a `## outbound` section to BENCHMARKS.md (MAILCTL_BENCH_NO_APPEND=1: printed only).
 */
import http from 'node:http';
import os from 'node:os';
import nodemailer from 'nodemailer';
import { startDovecot } from '../test/harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../test/harness/fixtures.js';
import { cli, createWorkspace, eventually, startDaemon } from '../test/harness/mailctl.js';
import { startSmtpServer } from '../test/harness/smtp.js';
import { appendToBenchmarks, cpuSecondsOf, giveUpAfter } from './common.js';

const N = Number(process.env.MAILCTL_BENCH_MESSAGES ?? 2000);
const CONCURRENCY = 50;
const AGENT = 'agent@example.com';
giveUpAfter('bench:outbound', 5);

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

/**
 * The load generator's POST: node:http over kept-alive connections. The bench process shares the 2 cores with the
 * daemon, and `fetch` (undici) spent about twice the CPU per request, which counted against mailctl.
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
function postJson(url: string, token: string, body: unknown): Promise<{ status: number; body: string }> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': data.length,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

const dovecot = await startDovecot({ users: { [AGENT]: 'agent-pass' } });
await dovecot.createFolder(AGENT, 'ContactStorage');
const smtp = await startSmtpServer({ ca: dovecot.ca, users: { [AGENT]: 'agent-pass' } });
const ws = await createWorkspace();
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
  let t0 = process.hrtime.bigint();
  let cpu0 = ownCpuSeconds();
  await Promise.all(
    Array.from({ length: N }, (_, i) =>
      transport.sendMail({ from: AGENT, to: 'customer@example.org', subject: `baseline ${i}`, text: body(i) }),
    ),
  );
  const baseline = N / seconds(t0);
  // the bench process also runs the SMTP server: its CPU per message covers both ends
  const baselineCpuMs = ((ownCpuSeconds() - cpu0) / N) * 1000;
  transport.close();

  const ref = `\${file:${await ws.writeSecret('agent', 'agent-pass')}}`;
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer(
    'imap.yaml',
    imapYaml({
      shortName: 'agent',
      user: AGENT,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: ref,
      storageFolder: 'ContactStorage',
    }),
  );
  await ws.writeServer(
    'smtp.yaml',
    smtpYaml({ shortName: 'agent', user: AGENT, port: smtp.port, caFile: smtp.caFile, password: ref }),
  );
  const daemon = await startDaemon(ws, ['--no-watch', '--log-level', 'warn']);
  const applied = await cli(['apply', '--dir', ws.dir], ws.env);
  if (applied.code !== 0) throw new Error(applied.stdout + applied.stderr);
  const before = smtp.messages.length;
  const daemonPid = daemon.child.pid!;
  const daemonCpu0 = await cpuSecondsOf(daemonPid);
  cpu0 = ownCpuSeconds();
  t0 = process.hrtime.bigint();
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
    const r = await postJson(`${daemon.url}/v1/outbound`, daemon.token, {
      from: AGENT,
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
  const throughput = N / total;
  const sent = smtp.messages.length - before;
  const copies = (await dovecot.listMessages(AGENT, 'ContactStorage')).length;
  agent.destroy();
  await daemon.stop();
  const ratio = throughput / baseline;
  const rows = [
    `| bare pooled nodemailer, 5 connections (baseline) | ${baseline.toFixed(0)} msg/s | |`,
    `| mailctl API → durable outbox → pooled send → sent copy (all ${N} done) | ${throughput.toFixed(0)} msg/s (${total.toFixed(2)} s) | ≥ 0.5× |`,
    `| — ratio to the baseline | ${ratio.toFixed(2)}× | ${ratio >= 0.5 ? '✔' : '✘'} |`,
    `| — of which accepting all ${N} (202, fsynced) | ${acceptedIn.toFixed(2)} s (${(N / acceptedIn).toFixed(0)} msg/s) | |`,
    `| CPU per message: mailctl daemon (API, outbox, compose, send, sent copy) | ${daemonCpuMs.toFixed(2)} ms | |`,
    `| — bench process during the mailctl run (API client + SMTP server); during the baseline (nodemailer + SMTP server) | ${benchCpuMs.toFixed(2)} ms; ${baselineCpuMs.toFixed(2)} ms | |`,
  ];
  const text = [
    '',
    '## outbound',
    '',
    `\`npm run bench:outbound\` — ${N} messages of ~4 KB, ${CONCURRENCY} concurrent API clients, local smtp-server (STARTTLS) and Dovecot (sent copies); ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}. Checked: ${sent} received by the SMTP server, ${copies} sent copies.`,
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
  await ws.cleanup();
}
process.exit(0);
