/**
 * How bench:inbound observes its contenders from outside, the same way for each: the messages it fills inboxes with,
 * the sink's files, Dovecot's mailbox status, the moment a run is complete, a daemon's memory, and child processes
 * that report in JSON lines.
 */
import { spawn } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Dovecot } from '../test/harness/dovecot.js';
import type { DaemonProcess } from '../test/harness/mailctl.js';
import { mib, percentile, sleep } from './common.js';

export const STORAGE = 'ContactStorage';

const LOREM = 'Dear support team, my order has not arrived yet and the tracking page shows no update since last week. ';
export function message(tag: string, i: number, bytes = 4096): string {
  const head = [
    'From: Customer <customer@example.org>',
    `To: Support <support@example.com>`,
    `Subject: ${i % 3 === 0 ? `Invoice ${i}` : `Question ${i}`} (${tag})`,
    `Message-ID: <bench-${tag}-${i}-${process.pid}@bench.example>`,
    'Date: Fri, 27 Nov 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
  ].join('\r\n');
  let body = '';
  while (head.length + body.length < bytes - 80) body += `${LOREM.slice(0, 76)}\r\n`;
  return `${head}\r\n${body}`;
}

/** `.json` files (not temp files) under every queue folder of `sink`, optionally only those starting with `prefix`. */
export async function countJson(sink: string, prefix = ''): Promise<number> {
  let n = 0;
  for (const q of await readdir(sink, { withFileTypes: true }).catch(() => [])) {
    if (!q.isDirectory()) continue;
    for (const f of await readdir(path.join(sink, q.name)).catch(() => [] as string[]))
      if (f.endsWith('.json') && !f.startsWith('.') && f.startsWith(prefix)) n++;
  }
  return n;
}

/** Oldest .eml mtime under the sink (when the first message landed), epoch ms. */
export async function firstFileAt(sink: string): Promise<number> {
  let min = Infinity;
  for (const q of await readdir(sink, { withFileTypes: true }).catch(() => [])) {
    if (!q.isDirectory()) continue;
    for (const f of await readdir(path.join(sink, q.name)))
      if (f.endsWith('.eml')) min = Math.min(min, (await stat(path.join(sink, q.name, f))).mtimeMs);
  }
  return min;
}

export async function boxStatus(dv: Dovecot, user: string, box: string): Promise<{ messages: number; unseen: number }> {
  const out = await dv.doveadm(['-f', 'flow', 'mailbox', 'status', '-u', user, 'messages unseen', box]);
  return {
    messages: Number(/messages=(\d+)/.exec(out)?.[1] ?? NaN),
    unseen: Number(/unseen=(\d+)/.exec(out)?.[1] ?? NaN),
  };
}

export interface Done {
  complete: boolean;
  doneAt: number;
  json: number;
  unseen: number;
  stored: number;
}
/**
 * Waits until `n` messages are in the sink (`.json` files in the folder `sink`, or what `sink()` counts: a queue
 * table's rows), INBOX has no unseen message and (if `copy`) the storage folder has `n`. Times with Date.now().
 */
export async function waitDone(
  dv: Dovecot,
  user: string,
  sink: string | (() => Promise<number>),
  n: number,
  copy: boolean,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<Done> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const json = typeof sink === 'string' ? await countJson(sink) : await sink();
    if (json >= n) {
      const inbox = await boxStatus(dv, user, 'INBOX');
      const unseen = inbox.unseen;
      const stored = copy ? (await boxStatus(dv, user, STORAGE)).messages : n;
      if (unseen === 0 && stored >= n) return { complete: true, doneAt: Date.now(), json, unseen, stored };
    }
    if (Date.now() > deadline || !alive()) {
      const inbox = await boxStatus(dv, user, 'INBOX');
      return {
        complete: false,
        doneAt: Date.now(),
        json,
        unseen: inbox.unseen,
        stored: copy ? (await boxStatus(dv, user, STORAGE)).messages : -1,
      };
    }
    await sleep(json >= n ? 25 : 50);
  }
}

/** RSS is read twice: 10 s after every loop is up, and once idle for a minute. V8's memory reducer gives the garbage of
 * the start (TLS handshakes, apply's verification) back only after some idle seconds; the idle figure is the one
 * an idle daemon keeps. The bare baseline is read at the same two moments. */
export const EARLY_MS = 10_000;
export const IDLE_MS = 60_000;

/** Where a daemon's memory is (V8 heap spaces committed, memory outside the heap), from its /metrics: one line. */
export async function heapSpaces(d: DaemonProcess): Promise<string> {
  const text = String((await d.api('GET', '/metrics').catch(() => ({ body: '' }))).body);
  const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const spaces = [...text.matchAll(/^mailctl_nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\d+)/gm)].map(
    ([, space, bytes]) => `${space} ${mib(Number(bytes))}`,
  );
  return `heap committed: ${spaces.join(', ')}; heap used ${mib(value(/^mailctl_nodejs_heap_size_used_bytes (\d+)/m))}; external ${mib(value(/^mailctl_nodejs_external_memory_bytes (\d+)/m))}`;
}

/** The median of three RSS readings a second apart, at EARLY_MS and at IDLE_MS from now; `whereAt` describes each moment. */
export async function idleRss(
  read: () => Promise<number>,
  whereAt?: () => Promise<string>,
): Promise<{ early: number; idle: number }> {
  const t0 = performance.now();
  const median3 = async () => {
    const samples: number[] = [];
    for (let k = 0; k < 3; k++) {
      samples.push(await read());
      await sleep(1000);
    }
    return percentile(samples, 50);
  };
  await sleep(EARLY_MS);
  const early = await median3();
  if (whereAt) console.log(`  at ${EARLY_MS / 1000} s: ${await whereAt()}`);
  await sleep(Math.max(0, IDLE_MS - (performance.now() - t0)));
  const idle = await median3();
  if (whereAt) console.log(`  idle: ${await whereAt()}`);
  return { early, idle };
}

/** `ids`: run as that user and group (the bench's peers, when it runs as root). */
export function spawnJson(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  ids?: { uid: number; gid: number },
): Promise<{ code: number | null; lines: any[]; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...ids });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      const lines = stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l);
          } catch {
            return null;
          }
        })
        .filter(Boolean);
      resolve({ code, lines, stderr, stdout });
    });
  });
}
