/**
 * Crash safety of inbound mail (issue 5, reliability notes §5 test 1): 500 messages arrive over LMTP at a steady rate
 * while the daemon is SIGKILLed at random moments (at least 20 times, 100–800 ms after each start) and restarted at once
 * (it resumes the applied config from the state folder); after every 4th random kill one more kill aims at the moment
 * a batch's copy intent has just been recorded, so the COPY recovery runs in every run. At each crash nothing may be
 * \Seen or in the storage folder without its complete pair in the queue. Once the last daemon has settled: every
 * message is in its queue exactly once (one `.json`, the `.eml` next to it holding the exact source), no `.tmp` file
 * is left in the queues, every message is in the storage folder exactly once and \Seen in the inbox, and the
 * checkpoint is valid JSON with nothing left in flight (and no temp file of a crashed checkpoint write left next to
 * it). The kill schedule, message sizes and routing come from a seeded PRNG (MAILCTL_CRASH_SEED to replay a schedule;
 * the timing of the daemon itself stays real).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const SUPPORT = 'support@example.com';
const STORAGE = 'ContactStorage';
const COUNT = 500;
const MIN_KILLS = 20;
const MAX_KILLS = 60;
/** After every 4th random kill, one kill right after a copy intent is recorded. */
const RANDOM_PER_TARGETED = 4;
/** One message every 50 ms: the 500 arrive over about 25 s, while the daemon is being killed. */
const DELIVERY_INTERVAL_MS = 50;
const SEED = Number(process.env.MAILCTL_CRASH_SEED ?? 20261128);
/** A temp file as writeFileAtomic names them, left by a kill in the middle of a checkpoint write. */
const PLANTED = '.imap_support.json.0123456789ab.tmp';
/** The safety-net poll the product relies on besides IDLE (as in inbound.test.ts). */
const POLL_EVERY_10_S = '*/10 * * * * *';

let stack: MailStack;
let dovecot: Dovecot;
let ws: Workspace;
let daemon: DaemonProcess;
let queues: string;
let cpFile: string;

/** mulberry32: a small seeded PRNG, so a failing kill schedule can be replayed with MAILCTL_CRASH_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sent {
  id: string;
  raw: string;
  queue: 'billing' | 'general';
}

/** 500 unique messages; about a third match the flow's `*invoice*` route (billing), the rest go to `general`. */
const messages: Sent[] = Array.from({ length: COUNT }, (_, i) => {
  const id = `<crash-${SEED}-${i}@test.example>`;
  const billing = random() < 0.35;
  const raw = [
    'From: Customer <customer@example.org>',
    `To: ${SUPPORT}`,
    `Subject: ${billing ? `Invoice ${i} is wrong` : `Question ${i}`}`,
    `Message-ID: ${id}`,
    'Date: Sat, 28 Nov 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Message ${i}`,
    ...Array.from({ length: between(1, 60) }, (_, l) => `line ${l} ${'x'.repeat(between(10, 70))}`),
    '',
  ].join('\r\n');
  return { id, raw, queue: billing ? 'billing' : 'general' };
});

interface Meta {
  uid: number;
  uidValidity: string;
  messageId: string | null;
  queue: string;
}

interface Checkpoint {
  lastUid: number;
  uidValidity: string;
  pending: Record<string, unknown>;
  copyIntent: unknown;
  updatedAt: string;
}

/** queue → every file name in it (hidden ones too). */
async function sinkFiles(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const q of await readdir(queues, { withFileTypes: true }).catch(() => [])) {
    if (q.isDirectory()) out.set(q.name, (await readdir(path.join(queues, q.name))).sort());
  }
  return out;
}

/** `<shortName>.<uidValidity>.<uid>.<hash>.json` → uid */
const uidOfKey = (file: string) => Number(file.split('.')[2]);

async function readCheckpoint(): Promise<Checkpoint | null> {
  const text = await readFile(cpFile, 'utf8').catch(() => null);
  return text === null ? null : (JSON.parse(text) as Checkpoint);
}

/** INBOX (or another folder) with the sizes IMAP reports (RFC822.SIZE: CRLF line ends, what BODY[] returns). */
async function folder(
  name: string,
): Promise<{ uid: number; flags: string[]; size: number; messageId: string | null }[]> {
  const out = await dovecot.doveadm([
    '-f',
    'tab',
    'fetch',
    '-u',
    SUPPORT,
    'uid flags size.virtual hdr.message-id',
    'mailbox',
    name,
    'all',
  ]);
  return out
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const [uid = '', flags = '', size = '', mid = ''] = line.split('\t');
      return {
        uid: Number(uid),
        flags: flags.split(' ').filter(Boolean),
        size: Number(size),
        messageId: mid.trim() || null,
      };
    });
}

test.before(async () => {
  stack = await startMailStack({ users: { [SUPPORT]: 'support-pass' }, folders: { [SUPPORT]: [STORAGE] } });
  ({ dovecot, ws } = stack);
  queues = path.join(ws.stateDir, 'queues');
  cpFile = path.join(ws.stateDir, 'inbound', 'imap_support.json');
  const ref = await stack.ref(SUPPORT);
  await ws.writeServer('flow.yaml', flowYaml('main', 'queues'));
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      user: SUPPORT,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: ref,
      storageFolder: STORAGE,
      pollSchedule: POLL_EVERY_10_S,
    }),
  );
  daemon = await stack.startDaemon(['--no-watch']);
  const r = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
});

test.after(async () => {
  await stack?.stop();
});

test(`SIGKILL the daemon ≥ ${MIN_KILLS} times while ${COUNT} messages arrive: each once in its queue, once in storage, all \\Seen`, async () => {
  const started = Date.now();
  // the deliverer: a steady stream over LMTP in the background
  let delivered = 0;
  let deliveryError: unknown = null;
  const delivery = (async () => {
    const t0 = Date.now();
    for (const [i, m] of messages.entries()) {
      const wait = t0 + i * DELIVERY_INTERVAL_MS - Date.now();
      if (wait > 0) await sleep(wait);
      await dovecot.deliver(SUPPORT, m.raw);
      delivered++;
    }
  })().catch((err) => (deliveryError = err));
  let deliveryDone = false;
  void delivery.then(() => (deliveryDone = true));

  // the killer: run the daemon for a random 100–800 ms, SIGKILL it, look at what it left in flight, restart at once.
  // Every RANDOM_PER_TARGETED random kills, one more kill aims at the narrowest window instead: right after the copy
  // intent is recorded (before or during the COPY/STORE/checkpoint of the batch), so the recovery path is exercised
  // every run, not only when a random moment happens to land there.
  const hit = { intent: 0, tmp: 0, unCheckpointed: 0, any: 0, targeted: 0, targetedHit: 0, recovered: 0, stateTmp: 0 };
  let kills = 0;
  let randomKills = 0;
  let slowestStartMs = 0;
  const outputs: string[] = [];
  const early: string[] = [];
  const killAndRestart = async () => {
    await daemon.kill();
    outputs.push(daemon.output());
    kills++;
    const cp = await readCheckpoint().catch(() => null);
    const files = [...(await sinkFiles()).values()].flat();
    const tmp = files.some((f) => f.endsWith('.tmp'));
    // a .json of a UID above the watermark: delivered, but its batch was not finished
    const unCheckpointed = cp !== null && files.some((f) => f.endsWith('.json') && uidOfKey(f) > cp.lastUid);
    const intent = cp?.copyIntent != null;
    if (intent) hit.intent++;
    if (tmp) hit.tmp++;
    if (unCheckpointed) hit.unCheckpointed++;
    if (intent || tmp || unCheckpointed) hit.any++;
    const stateTmp = (await readdir(path.dirname(cpFile)).catch(() => [] as string[])).filter(
      (f) => f.endsWith('.tmp') && f !== PLANTED,
    );
    if (stateTmp.length) hit.stateTmp++;
    // what a kill in the middle of a checkpoint write leaves (rare at random moments): planted once, so its removal
    // by the next daemon is checked in every run
    if (kills === 1)
      await writeFile(path.join(path.dirname(cpFile), PLANTED), '{"formatVersion":1,"serv', { mode: 0o600 });
    // at every crash: nothing is \Seen or in the storage folder before its pair is complete in the queue (§5 test 1)
    const acked = new Set(files.filter((f) => f.endsWith('.json')).map(uidOfKey));
    const inbox = await folder('INBOX');
    const ackedIds = new Set(inbox.filter((m) => acked.has(m.uid)).map((m) => m.messageId));
    early.push(
      ...inbox
        .filter((m) => m.flags.includes('\\Seen') && !acked.has(m.uid))
        .map((m) => `kill ${kills}: UID ${m.uid} \\Seen without its .json`),
    );
    early.push(
      ...(await folder(STORAGE))
        .filter((m) => !ackedIds.has(m.messageId))
        .map((m) => `kill ${kills}: ${m.messageId} in storage without its .json`),
    );
    const restarted = Date.now();
    daemon = await stack.startDaemon(['--no-watch']);
    slowestStartMs = Math.max(slowestStartMs, Date.now() - restarted);
  };
  while ((randomKills < MIN_KILLS || !deliveryDone) && kills < MAX_KILLS) {
    await sleep(between(100, 800));
    await killAndRestart();
    randomKills++;
    if (randomKills % RANDOM_PER_TARGETED === 0) {
      hit.targeted++;
      const until = Date.now() + 2000;
      // an intent this daemon recorded (not one left by the kill before, which it is about to resume)
      const before = (await readCheckpoint().catch(() => null))?.updatedAt;
      const recorded = (cp: Checkpoint | null) => cp !== null && cp.copyIntent != null && cp.updatedAt !== before;
      let seen = false;
      while (Date.now() < until && !(seen = recorded(await readCheckpoint().catch(() => null)))) await sleep(1);
      if (seen) hit.targetedHit++;
      await sleep(between(0, 10)); // before, during or after the COPY
      await killAndRestart();
    }
  }
  await delivery;
  if (deliveryError) throw deliveryError as Error;
  assert.is(delivered, COUNT);
  assert.equal(early, [], 'no message \\Seen or copied before it was delivered to its queue');
  const killedAt = Date.now();

  // the last daemon settles: nothing unseen in the inbox, every message has its .json
  const jsonCount = async () => [...(await sinkFiles()).values()].flat().filter((f) => f.endsWith('.json')).length;
  try {
    await eventually(
      async () => (await jsonCount()) >= COUNT && (await folder('INBOX')).every((m) => m.flags.includes('\\Seen')),
      60_000,
      'inbox all \\Seen and every .json written',
    );
    // and the checkpoint caught up (the batch's STORE comes before the checkpoint write)
    await eventually(
      async () => {
        const cp = await readCheckpoint();
        return cp && cp.copyIntent === null && Object.keys(cp.pending).length === 0 && cp.lastUid >= COUNT;
      },
      15_000,
      'checkpoint caught up',
    );
  } catch (err) {
    console.log(daemon.output().split('\n').slice(-40).join('\n'));
    throw err;
  }

  // the schedule did what the header promises: kills aimed at a recorded copy intent, and a restart that resumed one
  hit.recovered = [...outputs, daemon.output()].filter((o) => o.includes('resuming an interrupted copy')).length;
  assert.ok(hit.targetedHit >= 1, `no aimed kill saw a copy intent (${hit.targeted} tried)`);
  assert.ok(hit.recovered >= 1, `no restart resumed an interrupted copy (${hit.intent} kills left one recorded)`);

  // queues: each Message-ID in exactly one .json, in the right queue, its .eml next to it with the exact source
  const inbox = await folder('INBOX');
  assert.is(inbox.length, COUNT, 'every message reached the inbox');
  const inboxById = new Map(inbox.map((m) => [m.messageId, m]));
  const sent = new Map(messages.map((m) => [m.id, m]));
  const pairs = new Map<string, { queue: string; key: string; meta: Meta }[]>();
  const tmpLeft: string[] = [];
  const orphans: string[] = [];
  for (const [q, files] of await sinkFiles()) {
    for (const f of files) {
      if (f.endsWith('.tmp')) tmpLeft.push(`${q}/${f}`);
      else if (f.endsWith('.eml') && !files.includes(`${f.slice(0, -4)}.json`)) orphans.push(`${q}/${f}`);
      else if (!f.endsWith('.json') && !f.endsWith('.eml')) tmpLeft.push(`${q}/${f}`);
    }
    for (const f of files.filter((f) => f.endsWith('.json'))) {
      const meta = JSON.parse(await readFile(path.join(queues, q, f), 'utf8')) as Meta;
      const list = pairs.get(meta.messageId ?? '(none)') ?? [];
      list.push({ queue: q, key: f.slice(0, -'.json'.length), meta });
      pairs.set(meta.messageId ?? '(none)', list);
    }
  }
  assert.equal(tmpLeft, [], 'no temporary files left in the queues');
  assert.equal(
    [...pairs.keys()].filter((id) => !sent.has(id)),
    [],
    'nothing but the sent messages in the queues',
  );
  const missing = messages.filter((m) => !pairs.has(m.id)).map((m) => m.id);
  assert.equal(missing, [], 'every message reached a queue');
  const duplicated = [...pairs]
    .filter(([, l]) => l.length > 1)
    .map(([id, l]) => `${id}: ${l.map((p) => `${p.queue}/${p.key}`).join(', ')}`);
  assert.equal(duplicated, [], 'each message exactly once across all queues');
  assert.equal(orphans, [], 'no .eml without its .json');
  for (const [id, [{ queue, key, meta }]] of pairs as Map<string, [{ queue: string; key: string; meta: Meta }]>) {
    const m = sent.get(id)!;
    const stored = inboxById.get(id)!;
    assert.is(queue, m.queue, `${id}: routed to ${m.queue}`);
    assert.is(meta.queue, queue, `${id}: .json names its queue`);
    assert.is(meta.uid, stored.uid, `${id}: .json names its inbox UID`);
    const eml = await readFile(path.join(queues, queue, `${key}.eml`));
    assert.is(eml.length, stored.size, `${id}: .eml has the size of the server's copy`);
    // LMTP prepends Return-Path/Delivered-To/Received; the rest is exactly what was sent
    assert.ok(
      eml.subarray(eml.length - Buffer.byteLength(m.raw)).equals(Buffer.from(m.raw)),
      `${id}: .eml holds the exact source`,
    );
  }

  // storage folder: each message exactly once; inbox: every message \Seen
  const storage = await folder(STORAGE);
  const copies = new Map<string | null, number>();
  for (const s of storage) copies.set(s.messageId, (copies.get(s.messageId) ?? 0) + 1);
  assert.equal(
    messages.filter((m) => copies.get(m.id) !== 1).map((m) => `${m.id} ×${copies.get(m.id) ?? 0}`),
    [],
    'each message exactly once in the storage folder',
  );
  assert.is(storage.length, COUNT, 'nothing else in the storage folder');
  assert.equal(
    inbox.filter((m) => !m.flags.includes('\\Seen')).map((m) => m.uid),
    [],
    'every inbox message \\Seen',
  );
  assert.equal(
    inbox.filter((m) => m.flags.includes('\\Flagged')).map((m) => m.uid),
    [],
    'nothing quarantined',
  );

  // the checkpoint is valid JSON, nothing in flight, the watermark at the last UID
  const cp = JSON.parse(await readFile(cpFile, 'utf8')) as Checkpoint;
  assert.is(cp.copyIntent, null);
  assert.equal(cp.pending, {});
  assert.is(cp.lastUid, Math.max(...inbox.map((m) => m.uid)));
  // temp files of checkpoint writes a kill interrupted are removed by the next daemon's first poll
  assert.equal(
    (await readdir(path.dirname(cpFile))).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp files left in the state folder',
  );

  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  console.log(
    `  seed ${SEED}: ${kills} kills (${randomKills} at random moments, ${hit.targeted} aimed at a copy intent, ${hit.targetedHit} of which saw one) over ${s(killedAt - started)}, settled ${s(Date.now() - killedAt)} later; ` +
      `kills that left work in flight: ${hit.any} (copy intent recorded: ${hit.intent}, queue .tmp present: ${hit.tmp}, delivered but not checkpointed: ${hit.unCheckpointed}); ` +
      `restarts that resumed an interrupted copy: ${hit.recovered}; checkpoint temp files a kill left behind: ${hit.stateTmp}; slowest restart ${slowestStartMs} ms`,
  );
});

test.run();
