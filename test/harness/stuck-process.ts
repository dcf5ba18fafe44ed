/**
 * What a child process that stopped answering is doing, for the error a test reports: the kernel's view of its threads
 * (the main thread's state, wait channel and kernel stack; the others grouped by what they wait in) and, when the
 * process runs with `reportFlags`, Node's diagnostic report (the open handles an idle event loop waits for). Best
 * effort: whatever cannot be read is left out.
 */
import type { ChildProcess } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';

/** Node flags that let `describeStuckProcess` ask for a diagnostic report (written to `dir`). */
export const reportFlags = (dir: string): string[] => [
  '--report-on-signal',
  '--report-signal=SIGUSR2',
  `--report-directory=${dir}`,
  '--report-compact',
];

const read = (file: string) =>
  readFile(file, 'utf8').then(
    (t) => t.trim(),
    () => '',
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The main thread in full (state, wait channel, kernel stack); the others grouped by what they wait in. */
async function kernelView(pid: number): Promise<string[]> {
  const lines: string[] = [];
  const others = new Map<string, number>();
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const dir = `/proc/${pid}/task/${tid}`;
    const [status, wchan] = await Promise.all([read(`${dir}/status`), read(`${dir}/wchan`)]);
    const where = `${/^State:\s*(.*)$/m.exec(status)?.[1] ?? '?'}${wchan && wchan !== '0' ? ` in ${wchan}` : ''}`;
    if (tid !== String(pid)) {
      others.set(where, (others.get(where) ?? 0) + 1);
      continue;
    }
    lines.push(`main thread: ${where}`);
    const stack = await read(`${dir}/stack`);
    if (stack)
      lines.push(
        ...stack
          .split('\n')
          .slice(0, 8)
          .map((l) => `    ${l}`),
      );
  }
  if (others.size) lines.push(`other threads: ${[...others].map(([where, n]) => `${n} ${where}`).join('; ')}`);
  return lines;
}

async function nodeReport(child: ChildProcess, dir: string): Promise<string[]> {
  child.kill('SIGUSR2');
  for (let waited = 0; waited < 3000; waited += 100) {
    await sleep(100);
    const name = (await readdir(dir).catch(() => [] as string[])).find(
      (f) => f.startsWith('report.') && f.includes(`.${child.pid}.`),
    );
    if (!name) continue;
    const file = path.join(dir, name);
    try {
      const report = JSON.parse(await readFile(file, 'utf8')) as {
        libuv?: { type: string; is_active?: boolean; remoteEndpoint?: unknown; filename?: string }[];
      };
      const handles = (report.libuv ?? [])
        .filter((h) => h.is_active)
        .map(
          (h) =>
            `${h.type}${h.filename ? ` ${h.filename}` : ''}${h.remoteEndpoint ? ` → ${JSON.stringify(h.remoteEndpoint)}` : ''}`,
        );
      // the event loop answered the signal, so it is idle: the open handles say what it waits for
      return [`the event loop is idle; active handles: ${handles.join(', ') || 'none'}`];
    } catch {
      /* still being written */
    } finally {
      await rm(file, { force: true }).catch(() => undefined);
    }
  }
  return [
    'no diagnostic report within 3 s (the main thread is blocked, or the process was started without reportFlags)',
  ];
}

export async function describeStuckProcess(child: ChildProcess, reportDir: string): Promise<string> {
  if (child.pid === undefined) return 'the process has no pid';
  const kernel = await kernelView(child.pid);
  const report = await nodeReport(child, reportDir);
  return [`pid ${child.pid}:`, ...kernel, ...report].join('\n');
}
