/**
 * Throughput baseline of `bench:inbound` (run as its own process by inbound.bench.ts): a bare imapflow script doing
 * the work of the inbound loop without mailctl — STARTTLS login, every unseen UID of INBOX in batches of 100:
 * FETCH envelope + source (BODY.PEEK), write + fsync `<key>.eml` then `<key>.json` (temp file, rename, one folder fsync
 * per step), one UID COPY to the storage folder, one UID STORE +FLAGS.SILENT \Seen. No checkpoint, no routing rules
 * beyond the subject test of the bench flow. Input: env BENCH_BARE (JSON); output: one JSON line {t0, t1, n}.
 */
import { open, mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { ImapFlow, type FetchMessageObject } from 'imapflow';

interface Input {
  host: string;
  port: number;
  user: string;
  pass: string;
  ca: string;
  dir: string;
  storage: string;
  batch: number;
}
const cfg = JSON.parse(process.env.BENCH_BARE ?? '{}') as Input;

async function writeDurable(file: string, data: string | Uint8Array): Promise<void> {
  const h = await open(file, 'w', 0o600);
  try {
    await h.writeFile(data);
    await h.sync();
  } finally {
    await h.close();
  }
}
async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

const t0 = Date.now();
const client = new ImapFlow({
  host: cfg.host,
  port: cfg.port,
  secure: false,
  doSTARTTLS: true,
  tls: { ca: cfg.ca, rejectUnauthorized: true },
  auth: { user: cfg.user, pass: cfg.pass },
  logger: false,
  disableAutoIdle: true,
});
client.on('error', () => undefined);
await client.connect();
const box = await client.mailboxOpen('INBOX');
const uidValidity = String(box.uidValidity);
const uids = (await client.search({ seen: false }, { uid: true })) || [];
const dirs = new Map<string, string>();
const queueDir = async (q: string) => {
  let d = dirs.get(q);
  if (!d) {
    d = path.join(cfg.dir, q);
    await mkdir(d, { recursive: true });
    dirs.set(q, d);
  }
  return d;
};
let n = 0;
const phases = { fetch: 0, eml: 0, json: 0, copy: 0, store: 0 };
let tp = Date.now();
const lap = (k: keyof typeof phases) => {
  const t = Date.now();
  phases[k] += t - tp;
  tp = t;
};
for (let i = 0; i < uids.length; i += cfg.batch) {
  const set = uids.slice(i, i + cfg.batch).join(',');
  tp = Date.now();
  const msgs: FetchMessageObject[] = await client.fetchAll(
    set,
    { uid: true, envelope: true, source: true },
    { uid: true },
  );
  lap('fetch');
  const items = await Promise.all(
    msgs.map(async (m) => {
      const subject = m.envelope?.subject ?? '';
      const queue = /invoice/i.test(subject) ? 'billing' : 'general';
      return { m, dir: await queueDir(queue), key: `bare.${uidValidity}.${m.uid}`, queue, subject };
    }),
  );
  await Promise.all(
    items.map(async ({ m, dir, key }) => {
      const tmp = path.join(dir, `.${key}.tmp`);
      await writeDurable(tmp, m.source!);
      await rename(tmp, path.join(dir, `${key}.eml`));
    }),
  );
  await Promise.all([...new Set(items.map((x) => x.dir))].map(fsyncDir));
  lap('eml');
  await Promise.all(
    items.map(async ({ m, dir, key, queue, subject }) => {
      const tmp = path.join(dir, `.${key}.tmp`);
      const env = m.envelope;
      const meta = {
        server: 'bare',
        folder: 'INBOX',
        uidValidity,
        uid: m.uid,
        messageId: env?.messageId ?? null,
        from: (env?.from ?? []).map((a) => a.address),
        to: (env?.to ?? []).map((a) => a.address),
        cc: (env?.cc ?? []).map((a) => a.address),
        subject,
        date: env?.date ? new Date(env.date).toISOString() : null,
        queue,
        receivedAt: new Date().toISOString(),
        autoReply: false,
      };
      await writeDurable(tmp, `${JSON.stringify(meta, null, 2)}\n`);
      await rename(tmp, path.join(dir, `${key}.json`));
    }),
  );
  await Promise.all([...new Set(items.map((x) => x.dir))].map(fsyncDir));
  lap('json');
  await client.messageCopy(set, cfg.storage, { uid: true });
  lap('copy');
  await client.messageFlagsAdd(set, ['\\Seen'], { uid: true, silent: true });
  lap('store');
  n += msgs.length;
}
await client.logout();
console.log(JSON.stringify({ t0, t1: Date.now(), n, phases }));
