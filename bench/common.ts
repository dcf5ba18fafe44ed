/**
 * What every benchmark script shares: a watchdog, the BENCHMARKS.md section it appends, number formats, batching and
 * readings of another process from /proc (the daemon runs in its own process).
 */
import { appendFile, readFile } from 'node:fs/promises';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

const BENCHMARKS_MD = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));

/** Ends the run with exit code 1 if it is still going after `minutes` (a stuck server must not hang a CI job). */
export function giveUpAfter(name: string, minutes: number): void {
  setTimeout(() => {
    console.error(`${name}: gave up after ${minutes} minutes`);
    process.exit(1);
  }, minutes * 60_000).unref();
}

/** Appends `section` to BENCHMARKS.md; MAILCTL_BENCH_NO_APPEND=1 (smoke runs, profiling) only prints that it did not. */
export async function appendToBenchmarks(heading: string, section: string): Promise<void> {
  if (process.env.MAILCTL_BENCH_NO_APPEND === '1') {
    console.log('MAILCTL_BENCH_NO_APPEND=1: BENCHMARKS.md left alone');
    return;
  }
  await appendFile(BENCHMARKS_MD, section);
  console.log(`appended the ## ${heading} section to ${BENCHMARKS_MD}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const formatMs = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
export const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
export const kib = (bytes: number) => `${(bytes / 1024).toFixed(0)} KiB`;

/** The nearest-rank percentile `p` (0–100) of `xs`. */
export function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
export const median = (xs: number[]) => percentile(xs, 50);

/** Runs `fn` over `items`, `size` at a time, each group after the previous one has finished. */
export async function inBatches<T>(
  items: T[],
  size: number,
  fn: (item: T, index: number) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map((x, j) => fn(x, i + j)));
}

/** Resident memory of a process, in bytes. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024;
}

/** CPU seconds (user + system) a process has used so far. */
export async function cpuSecondsOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime (fields 14, 15) in clock ticks of 1/100 s
}

/**
 * The load generator's POST of a JSON body: node:http over `concurrency` kept-alive connections. The bench process
 * shares the 2 cores with the daemon, and `fetch` (undici) spent about twice the CPU per request, which counted
 * against mailctl.
 */
export function jsonPoster(concurrency: number): {
  post(url: string, token: string, body: unknown): Promise<{ status: number; body: string }>;
  close(): void;
} {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const post = (url: string, token: string, body: unknown): Promise<{ status: number; body: string }> => {
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
  };
  return { post, close: () => agent.destroy() };
}
