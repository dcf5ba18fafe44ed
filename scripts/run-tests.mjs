// Runs every test/**/*.test.ts file in its own Node process (so servers and daemons started by one file cannot leak
// into another), two at a time, and ends with the line CI reads: "N passed, N failed".
// Usage: node scripts/run-tests.mjs [--unit] [filter...]
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((a) => !a.startsWith('--'));
const PARALLEL = Number(process.env.MAILCTL_TEST_JOBS ?? 2);
const FILE_TIMEOUT_MS = 8 * 60_000;

async function find(dir) {
  const entries = await readdir(dir, { withFileTypes: true });
  const found = [];
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) found.push(...(await find(p)));
    else if (e.name.endsWith('.test.ts')) found.push(p);
  }
  return found.sort();
}

let files = await find('test');
if (unitOnly) files = files.filter((f) => !f.includes(`${path.sep}integration${path.sep}`));
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
// The slow files first (integration tests against real servers), the quick unit tests fill the gaps at the end: two
// workers then finish together instead of one waiting on a long file started last.
const slow = (f) => /[/\\](integration|examples)[/\\]/.test(f) || /oauth2-/.test(f);
files.sort((a, b) => Number(slow(b)) - Number(slow(a)) || (a < b ? -1 : 1));

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.stderr.on('data', (d) => (text += d));
    const timer = setTimeout(() => {
      text += `\n[run-tests] ${file} timed out after ${FILE_TIMEOUT_MS / 1000} s; killed\n`;
      child.kill('SIGKILL');
    }, FILE_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      const total = Number(/Total:\s+(\d+)/.exec(text)?.[1] ?? NaN);
      const ok = Number(/Passed:\s+(\d+)/.exec(text)?.[1] ?? NaN);
      const skip = Number(/Skipped:\s+(\d+)/.exec(text)?.[1] ?? 0);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      if (Number.isNaN(total) || Number.isNaN(ok)) {
        failed += 1;
        failures.push(file);
        process.stdout.write(`✘ ${file} (no test summary, exit ${code}, ${seconds} s)\n${text}\n`);
      } else {
        const bad = total - ok - skip + (code !== 0 && total === ok + skip ? 1 : 0);
        passed += ok;
        failed += bad;
        skipped += skip;
        if (bad > 0) {
          failures.push(file);
          process.stdout.write(`✘ ${file}: ${ok} passed, ${bad} failed (${seconds} s)\n${text}\n`);
        } else process.stdout.write(`✔ ${file}: ${ok} passed${skip ? `, ${skip} skipped` : ''} (${seconds} s)\n`);
      }
      resolve();
    });
  });
}

const queue = [...files];
await Promise.all(
  Array.from({ length: Math.min(PARALLEL, queue.length) }, async () => {
    while (queue.length) await runFile(queue.shift());
  }),
);
if (failures.length) process.stdout.write(`\nfailing files:\n${failures.map((f) => `  ${f}`).join('\n')}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
