/**
 * The layout's rules, read from the import statements of src/ (type-only and dynamic imports count): no circle of
 * imports; each folder imports only the folders below it; the CLI reaches the runtime only to start the daemon; plan/
 * has no file system, network or clock; only adapters/ speaks to the mail libraries; only store/ knows the state
 * folder's files, and only store/postgres/ the database driver. README "Layout" explains the layers.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

interface Module {
  file: string;
  /** Relative imports, resolved to files under src/ (relative paths). */
  local: string[];
  /** Package and node: imports. */
  packages: string[];
  text: string;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : full.endsWith('.ts') ? [full] : [];
  });
}

const modules: Module[] = walk(SRC).map((full) => {
  const text = readFileSync(full, 'utf8');
  const file = path.relative(SRC, full);
  const specs = ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
  const local = specs
    .filter((s) => s.startsWith('.'))
    .map((s) => path.relative(SRC, path.resolve(path.dirname(full), s)).replace(/\.js$/, '.ts'))
    .filter((s) => !s.startsWith('..'));
  return { file, local, packages: specs.filter((s) => !s.startsWith('.')), text };
});
const byFile = new Map(modules.map((m) => [m.file, m]));
const folderOf = (file: string) => file.split('/')[0]!;

test('the import scan sees the tree (a scan that finds nothing would pass every rule)', () => {
  assert.ok(modules.length > 80, `${modules.length} modules`);
  assert.ok(byFile.get('runtime/daemon/start.ts')!.local.includes('runtime/reconcile/reconciler.ts'));
  assert.ok(byFile.get('adapters/mailbox.ts')!.packages.includes('imapflow'));
});

test('no circle of imports anywhere in src/', () => {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of byFile.get(file)?.local ?? []) {
      if (!byFile.has(next)) continue;
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const m of modules) if (!state.has(m.file)) visit(m.file);
  assert.equal(
    cycles.map((c) => c.join(' → ')),
    [],
  );
});

/** Which folders each folder may import (besides itself). */
const MAY_IMPORT: Record<string, string[]> = {
  generated: [],
  config: ['generated'],
  plan: ['config', 'generated'],
  api: ['config', 'plan'],
  adapters: ['api'],
  store: ['adapters', 'api', 'plan', 'config'],
  connect: ['adapters', 'api', 'plan', 'config'],
  runtime: ['store', 'connect', 'adapters', 'api', 'plan', 'config', 'generated'],
  cli: ['store', 'adapters', 'api', 'plan', 'config', 'generated'],
};

test('each folder imports only the folders below it', () => {
  const wrong: string[] = [];
  for (const m of modules) {
    const from = folderOf(m.file);
    assert.ok(MAY_IMPORT[from], `${m.file}: ${from}/ is not a known folder of the layout`);
    for (const target of m.local) {
      const to = folderOf(target);
      if (to !== from && !MAY_IMPORT[from].includes(to) && !(from === 'cli' && to === 'runtime'))
        wrong.push(`${m.file} → ${target}`);
    }
  }
  assert.equal(wrong, []);
});

test('the CLI imports nothing from the runtime but the daemon entry, from `run` only', () => {
  const found = modules.flatMap((m) =>
    m.file.startsWith('cli/') ? m.local.filter((t) => t.startsWith('runtime/')).map((t) => `${m.file} → ${t}`) : [],
  );
  assert.equal(found, ['cli/commands/run.ts → runtime/daemon/start.ts']);
});

test('plan/ is pure: no file system, network, processes or clock', () => {
  const IO = /^node:(fs|fs\/promises|net|http|https|dgram|dns|child_process|worker_threads)$/;
  const CLOCK = /\bDate\.now\(|\bnew Date\(\)|\bperformance\.now\(|\bsetTimeout\(|\bsetInterval\(/;
  for (const m of modules.filter((m) => m.file.startsWith('plan/'))) {
    assert.equal(
      m.packages.filter((p) => IO.test(p)),
      [],
      `${m.file} imports I/O`,
    );
    assert.not.ok(CLOCK.test(m.text), `${m.file} reads the clock`);
  }
});

test('one module holds all cron logic (config/schedule.ts is the only user of node-cron)', () => {
  const found = modules.filter((m) => m.packages.includes('node-cron')).map((m) => m.file);
  assert.equal(found, ['config/schedule.ts']);
});

test('only adapters/ imports the mail libraries (imapflow, nodemailer, libmime)', () => {
  const MAIL = /^(imapflow|nodemailer|libmime)(\/|$)/;
  const found = modules.filter((m) => !m.file.startsWith('adapters/') && m.packages.some((p) => MAIL.test(p)));
  assert.equal(
    found.map((m) => m.file),
    [],
  );
});

test('only store/postgres/ imports the PostgreSQL driver (pg): the rest of the daemon sees the store ports', () => {
  const found = modules.filter(
    (m) => !m.file.startsWith('store/postgres/') && m.packages.some((p) => /^pg(\/|$)/.test(p)),
  );
  assert.equal(
    found.map((m) => m.file),
    [],
  );
  assert.ok(byFile.get('store/postgres/db.ts')!.packages.includes('pg'), 'the scan sees the driver where it is');
});

/**
 * The state folder is the store's: outside src/store, only the daemon's wiring opens the file store, and only the
 * directory sink (a queue folder, often inside the state folder) and `plan --out` write files durably.
 */
test('only store/ touches the state folder', () => {
  const opensStore = modules.filter(
    (m) => !m.file.startsWith('store/') && m.local.some((t) => t.startsWith('store/file/') || t === 'store/local.ts'),
  );
  assert.equal(
    opensStore.map((m) => m.file),
    ['runtime/daemon/start.ts'],
  );
  const writesFiles = modules.filter(
    (m) => !m.file.startsWith('store/') && m.local.includes('adapters/durable-files.ts'),
  );
  assert.equal(writesFiles.map((m) => m.file).sort(), ['cli/commands/plan.ts', 'runtime/inbound/sinks/directory.ts']);
});

// src/ (src/generated/ too: scripts/gen-types.mjs wraps the schema's descriptions) keeps within 120 columns, the
// width prettier formats to; prettier does not break strings and comments, so this test does.
test('no line over 120 columns in src/', () => {
  const long = modules.flatMap((m) =>
    m.text.split('\n').flatMap((line, i) => (line.length > 120 ? [`src/${m.file}:${i + 1}`] : [])),
  );
  assert.equal(long, []);
});

test.run();
