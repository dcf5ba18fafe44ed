/**
 * Memory baseline of `bench:inbound` (run as its own process by inbound.bench.ts): N bare imapflow connections in one
 * Node process, each STARTTLS + login, INBOX selected, IDLE — what the daemon's idle loops hold, without mailctl.
 * Prints JSON lines: {baseline} (RSS after imports, before any connection) and {rss, rssIdle, connected} read
 * `earlyMs` after the last connection and again after `idleMs`. Input: env BENCH_IDLE (JSON).
 */
import { ImapFlow } from 'imapflow';

interface Input {
  host: string;
  port: number;
  ca: string;
  users: [string, string][];
  earlyMs: number;
  idleMs: number;
  parallel: number;
}
const cfg = JSON.parse(process.env.BENCH_IDLE ?? '{}') as Input;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

await sleep(500);
console.log(JSON.stringify({ baseline: process.memoryUsage().rss }));
const clients: ImapFlow[] = [];
let failed = 0;
let firstError = '';
for (let i = 0; i < cfg.users.length; i += cfg.parallel) {
  await Promise.all(
    cfg.users.slice(i, i + cfg.parallel).map(async ([user, pass]) => {
      const c = new ImapFlow({
        host: cfg.host,
        port: cfg.port,
        secure: false,
        doSTARTTLS: true,
        tls: { ca: cfg.ca, rejectUnauthorized: true },
        auth: { user, pass },
        logger: false,
        socketTimeout: 5 * 60_000,
      });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.mailboxOpen('INBOX');
        void c.idle().catch(() => undefined);
        clients.push(c);
      } catch (err) {
        failed++;
        firstError ||= (err as Error).message;
      }
    }),
  );
}
/** The median of three RSS readings a second apart. */
async function medianRss(): Promise<number> {
  const samples: number[] = [];
  for (let k = 0; k < 3; k++) {
    samples.push(process.memoryUsage().rss);
    await sleep(1000);
  }
  return samples.sort((a, b) => a - b)[1]!;
}
// read at the same two moments as the daemon: shortly after connecting, and idle
const t0 = Date.now();
await sleep(cfg.earlyMs);
const rss = await medianRss();
await sleep(Math.max(0, cfg.idleMs - (Date.now() - t0)));
const rssIdle = await medianRss();
const usable = clients.filter((c) => c.usable).length;
console.log(JSON.stringify({ rss, rssIdle, connected: usable, failed, firstError }));
process.exit(0);
