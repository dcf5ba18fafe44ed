/**
 * Crash safety of inbound mail (issue 5, reliability notes §5 test 1), run against each store by its test files
 * (inbound-crash.test.ts: the state folder and the directory sink; inbound-crash-postgres.test.ts: the PostgreSQL
 * store and its sink): 500 messages arrive over LMTP at a steady rate while the daemon is SIGKILLed at random moments
 * (at least 20 times, 100–800 ms after each start) and restarted at once (it resumes the applied config from its
 * store); after every 4th random kill one more kill aims at the moment a batch's copy intent has just been recorded, so
 * the COPY recovery runs in every run. At each crash nothing may be \Seen or in the storage folder without being in its
 * queue (a complete `.json`/`.eml` pair, or a committed row). Once the last daemon has settled: every message is in its
 * queue exactly once, with the exact source; nothing half-written is left in the queues; every message is in the
 * storage folder exactly once and \Seen in the inbox, and the checkpoint has nothing left in flight (with the file
 * store, no temp file of a crashed checkpoint write left next to it either). The kill schedule, message sizes and
 * routing come from a seeded PRNG (MAILCTL_CRASH_SEED to replay a schedule; the timing of the daemon itself stays real).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, postgresFlowYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { startMailStack, type MailStack, type StoredCheckpointView } from '../harness/stack.js';

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
let queue: QueueView;
/** The file store's checkpoint file (its folder is where a crashed write leaves temp files). */
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

/** A message as its queue holds it. */
interface Delivered {
  queue: string;
  key: string;
  uid: number;
  messageId: string | null;
  source: Buffer;
}

/** The queue as the flow's sink keeps it: `.eml` + `.json` files, or rows of the PostgreSQL store. */
interface QueueView {
  /** The UIDs whose delivery is complete (a `.json`, or a committed row). */
  uids(): Promise<number[]>;
  all(): Promise<Delivered[]>;
  /** What a crash left half-written (temp files, an `.eml` without its `.json`): must be gone once settled. */
  leftovers(): Promise<string[]>;
}

/** `<shortName>.<uidValidity>.<uid>.<hash>` → uid */
const uidOfKey = (key: string) => Number(key.split('.')[2]);

function directoryQueue(queues: string): QueueView {
  /** queue → every file name in it (hidden ones too). */
  const files = async (): Promise<Map<string, string[]>> => {
    const out = new Map<string, string[]>();
    for (const q of await readdir(queues, { withFileTypes: true }).catch(() => [])) {
      if (q.isDirectory()) out.set(q.name, (await readdir(path.join(queues, q.name))).sort());
    }
    return out;
  };
  return {
    async uids() {
      return [...(await files()).values()]
        .flat()
        .filter((f) => f.endsWith('.json'))
        .map(uidOfKey);
    },
    async all() {
      const out: Delivered[] = [];
      for (const [q, names] of await files()) {
        for (const f of names.filter((n) => n.endsWith('.json'))) {
          const key = f.slice(0, -'.json'.length);
          const meta = JSON.parse(await readFile(path.join(queues, q, f), 'utf8')) as {
            uid: number;
            messageId: string | null;
            queue: string;
          };
          assert.is(meta.queue, q, `${key}: .json names its queue`);
          const source = await readFile(path.join(queues, q, `${key}.eml`));
          out.push({ queue: q, key, uid: meta.uid, messageId: meta.messageId, source });
        }
      }
      return out;
    },
    async leftovers() {
      const left: string[] = [];
      for (const [q, names] of await files())
        for (const f of names) {
          if (f.endsWith('.eml') && !names.includes(`${f.slice(0, -4)}.json`)) left.push(`${q}/${f} (no .json)`);
          else if (!f.endsWith('.json') && !f.endsWith('.eml')) left.push(`${q}/${f}`);
        }
      return left;
    },
  };
}

function tableQueue(s: MailStack): QueueView {
  const rows = async (columns: string) =>
    s.pg.admin(`SELECT ${columns} FROM mailctl.inbound_messages ORDER BY uid`, s.pg.database);
  return {
    uids: async () => (await rows('uid')).map((r) => Number(r.uid)),
    all: async () =>
      (await rows('queue, key, uid, message_id, source')).map((r) => ({
        queue: r.queue as string,
        key: r.key as string,
        uid: Number(r.uid),
        messageId: r.message_id as string | null,
        source: r.source as Buffer,
      })),
    // a row is committed whole or not at all
    leftovers: () => Promise.resolve([]),
  };
}

const readCheckpoint = (): Promise<StoredCheckpointView | null> => stack.checkpoint('imap/support');

/** INBOX (or another folder) with the sizes IMAP reports (RFC822.SIZE: CRLF line ends, what BODY[] returns). */
const folder = (name: string) => dovecot.listMessages(SUPPORT, name, 'virtual');

/** The test against one store (its test file names it). */
export function inboundCrashTest(store: 'file' | 'postgres'): void {
  test.before(async () => {
    stack = await startMailStack({ users: { [SUPPORT]: 'support-pass' }, folders: { [SUPPORT]: [STORAGE] }, store });
    ({ dovecot, ws } = stack);
    queue = store === 'file' ? directoryQueue(path.join(ws.stateDir, 'queues')) : tableQueue(stack);
    cpFile = path.join(ws.stateDir, 'inbound', 'imap_support.json');
    const ref = await stack.ref(SUPPORT);
    await ws.writeServer('flow.yaml', store === 'file' ? flowYaml('main', 'queues') : postgresFlowYaml('main'));
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

  test(`${store} store: SIGKILL the daemon ≥ ${MIN_KILLS} times while ${COUNT} messages arrive: each once in its queue, once in storage, all \\Seen`, async () => {
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
    const hit = {
      intent: 0,
      tmp: 0,
      unCheckpointed: 0,
      any: 0,
      targeted: 0,
      targetedHit: 0,
      recovered: 0,
      stateTmp: 0,
    };
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
      const ackedUids = await queue.uids();
      const tmp = (await queue.leftovers()).length > 0;
      // in the queue with a UID above the watermark: delivered, but its batch was not finished
      const unCheckpointed = cp !== null && ackedUids.some((uid) => uid > cp.lastUid);
      const intent = cp?.copyIntent != null;
      if (intent) hit.intent++;
      if (tmp) hit.tmp++;
      if (unCheckpointed) hit.unCheckpointed++;
      if (intent || tmp || unCheckpointed) hit.any++;
      if (store === 'file') {
        const stateTmp = (await readdir(path.dirname(cpFile)).catch(() => [] as string[])).filter(
          (f) => f.endsWith('.tmp') && f !== PLANTED,
        );
        if (stateTmp.length) hit.stateTmp++;
        // what a kill in the middle of a checkpoint write leaves (rare at random moments): planted once, so its removal
        // by the next daemon is checked in every run
        if (kills === 1)
          await writeFile(path.join(path.dirname(cpFile), PLANTED), '{"formatVersion":1,"serv', { mode: 0o600 });
      }
      // at every crash: nothing is \Seen or in the storage folder before it is complete in its queue (§5 test 1)
      const acked = new Set(ackedUids);
      const inbox = await folder('INBOX');
      const ackedIds = new Set(inbox.filter((m) => acked.has(m.uid)).map((m) => m.messageId));
      early.push(
        ...inbox
          .filter((m) => m.flags.includes('\\Seen') && !acked.has(m.uid))
          .map((m) => `kill ${kills}: UID ${m.uid} \\Seen before it is in its queue`),
      );
      early.push(
        ...(await folder(STORAGE))
          .filter((m) => !ackedIds.has(m.messageId))
          .map((m) => `kill ${kills}: ${m.messageId} in storage before it is in its queue`),
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
        const recorded = (cp: StoredCheckpointView | null) =>
          cp !== null && cp.copyIntent != null && cp.updatedAt !== before;
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

    // the last daemon settles: nothing unseen in the inbox, every message in its queue
    try {
      await eventually(
        async () =>
          (await queue.uids()).length >= COUNT && (await folder('INBOX')).every((m) => m.flags.includes('\\Seen')),
        60_000,
        'inbox all \\Seen and every message in its queue',
      );
      // and the checkpoint caught up (the batch's STORE comes before the checkpoint write)
      await eventually(
        async () => {
          const cp = await readCheckpoint();
          return (
            cp &&
            cp.copyIntent === null &&
            Object.keys(cp.pending).length === 0 &&
            cp.backlog === undefined &&
            cp.lastUid >= COUNT
          );
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

    // queues: each Message-ID exactly once, in the right queue, with the exact source
    const inbox = await folder('INBOX');
    assert.is(inbox.length, COUNT, 'every message reached the inbox');
    const inboxById = new Map(inbox.map((m) => [m.messageId, m]));
    const sent = new Map(messages.map((m) => [m.id, m]));
    const byId = new Map<string, Delivered[]>();
    for (const d of await queue.all())
      byId.set(d.messageId ?? '(none)', [...(byId.get(d.messageId ?? '(none)') ?? []), d]);
    assert.equal(await queue.leftovers(), [], 'nothing half-written left in the queues');
    assert.equal(
      [...byId.keys()].filter((id) => !sent.has(id)),
      [],
      'nothing but the sent messages in the queues',
    );
    const missing = messages.filter((m) => !byId.has(m.id)).map((m) => m.id);
    assert.equal(missing, [], 'every message reached a queue');
    const duplicated = [...byId]
      .filter(([, l]) => l.length > 1)
      .map(([id, l]) => `${id}: ${l.map((p) => `${p.queue}/${p.key}`).join(', ')}`);
    assert.equal(duplicated, [], 'each message exactly once across all queues');
    for (const [id, [d]] of byId as Map<string, [Delivered]>) {
      const m = sent.get(id)!;
      const stored = inboxById.get(id)!;
      assert.is(d.queue, m.queue, `${id}: routed to ${m.queue}`);
      assert.is(d.uid, stored.uid, `${id}: its inbox UID`);
      assert.is(uidOfKey(d.key), stored.uid, `${id}: its key names its inbox UID`);
      assert.is(d.source.length, stored.size, `${id}: the source has the size of the server's copy`);
      // LMTP prepends Return-Path/Delivered-To/Received; the rest is exactly what was sent
      assert.ok(
        d.source.subarray(d.source.length - Buffer.byteLength(m.raw)).equals(Buffer.from(m.raw)),
        `${id}: the exact source`,
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

    // the checkpoint has nothing in flight, the watermark at the last UID
    const cp = (await readCheckpoint())!;
    assert.is(cp.copyIntent, null);
    assert.equal(cp.pending, {});
    assert.is(cp.lastUid, Math.max(...inbox.map((m) => m.uid)));
    // temp files of checkpoint writes a kill interrupted are removed by the next daemon's first poll
    if (store === 'file')
      assert.equal(
        (await readdir(path.dirname(cpFile))).filter((f) => f.endsWith('.tmp')),
        [],
        'no temp files left in the state folder',
      );

    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    console.log(
      `  ${store} store, seed ${SEED}: ${kills} kills (${randomKills} at random moments, ${hit.targeted} aimed at a copy intent, ${hit.targetedHit} of which saw one) over ${s(killedAt - started)}, settled ${s(Date.now() - killedAt)} later; ` +
        `kills that left work in flight: ${hit.any} (copy intent recorded: ${hit.intent}, half-written sink files: ${hit.tmp}, delivered but not checkpointed: ${hit.unCheckpointed}); ` +
        `restarts that resumed an interrupted copy: ${hit.recovered}; ${store === 'file' ? `checkpoint temp files a kill left behind: ${hit.stateTmp}; ` : ''}slowest restart ${slowestStartMs} ms`,
    );
  });

  test.run();
}
