// npm run bench:validate — the cost of `mailctl validate` against the floor, parsing the same files with `yaml` alone.
//
// Generates 10,000 EmailServer documents (imap + smtp pairs, realistic fields and comments) and one EmailFlow per file
// over 500 files in a temp folder, then measures, interleaved, several warm runs of
//   validate: loadConfig(dir) — read + parse + hostile-input checks + schema + cross-file rules, what `validate` does;
//   yaml:     read the same files + parseAllDocuments() per file (the parser alone, no checks).
// and prints the medians and their ratio (goal ≤ 2.0).
// Options: BENCH_RUNS (default 7), BENCH_FILES (500), BENCH_PAIRS_PER_FILE (10).
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../src/config/load.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const FILES = Number(process.env.BENCH_FILES ?? 500);
const PAIRS = Number(process.env.BENCH_PAIRS_PER_FILE ?? 10);

function fileText(f: number): string {
  const team = `team-${String(f).padStart(3, '0')}`;
  const docs: string[] = [
    [
      '# yaml-language-server: $schema=../../schema/mailctl.schema.json',
      `# Mailboxes of ${team}. Generated for the benchmark.`,
      'kind: EmailFlow',
      `name: ${team}`,
      `description: Routes the mail of ${team}`,
      'routes:',
      '  - queue: vip',
      '    when:',
      '      from: ["*@bigcustomer.example", "ceo@partner.example"]',
      '  - queue: billing',
      '    when:',
      '      subject: ["*invoice*", "*refund*"]',
      '  - queue: urgent',
      '    when:',
      '      header: {name: X-Priority, value: "1*"}',
      `  - queue: ${team}`,
      'autoReplies:',
      '  queue: auto-replies',
      'deliver:',
      `  directory: inbound/${team}`,
    ].join('\n'),
  ];
  for (let p = 0; p < PAIRS; p++) {
    const short = `${team}-box${p}`;
    const user = `${short}@example.com`;
    const host = `mail${f % 7}.example.com`;
    docs.push(
      [
        `# ${short}: inbound`,
        'apiVersion: mailctl/v1',
        'kind: EmailServer',
        'type: imap',
        `name: Inbox ${short}`,
        `shortName: ${short}`,
        `description: Customer mail for ${team}, box ${p}`,
        `host: imap.${host}`,
        p % 3 === 0 ? 'port: 993' : '# port: 993 (default)',
        'auth:',
        '  type: basic',
        `  user: ${user}`,
        `  password: "\${file:/run/secrets/${short}}"`,
        'folder: INBOX',
        'storageFolder: ContactStorage',
        `flow: ${team}`,
        `pollSchedule: "*/${10 + (p % 5) * 10} * * * * *"`,
        'backfill: unseen',
        'maxMessageSize: 41943040',
      ].join('\n'),
      [
        `# ${short}: outbound, same user so replies come from the address customers wrote to`,
        'kind: EmailServer',
        'type: smtp',
        `name: Outbox ${short}`,
        `shortName: ${short}`,
        `host: smtp.${host}`,
        p % 2 === 0 ? 'port: 587\ntls: false' : 'tls: true',
        'auth:',
        '  type: basic',
        `  user: ${user}`,
        `  password: "\${env:MAILCTL_SECRET_${short.replace(/-/g, '_').toUpperCase()}}"`,
        'additionalFromAddresses:',
        `  - help-${short}@example.com`,
      ].join('\n'),
    );
  }
  return `${docs.join('\n---\n')}\n`;
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

/** The floor: read every file and parse it with the yaml package, nothing else. */
async function yamlOnly(dir: string): Promise<number> {
  let documents = 0;
  for (const file of await listFiles(dir)) documents += parseAllDocuments(await readFile(file, 'utf8')).length;
  return documents;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const start = performance.now();
  const result = await fn();
  return [performance.now() - start, result];
}

const root = await mkdtemp(path.join(os.tmpdir(), 'mailctl-bench-'));
try {
  const dir = path.join(root, 'servers.d');
  for (let f = 0; f < FILES; f++) {
    const sub = path.join(dir, `group-${Math.floor(f / 50)}`);
    if (f % 50 === 0) await mkdir(sub, { recursive: true });
    await writeFile(path.join(sub, `team-${String(f).padStart(3, '0')}.yaml`), fileText(f));
  }
  const bytes = (await Promise.all((await listFiles(dir)).map((f) => readFile(f)))).reduce((n, b) => n + b.length, 0);

  // Warm-up (JIT, ajv compile, file cache) and a sanity check that the generated folder is what we say it is.
  const check = await loadConfig(dir);
  const servers = check.servers.length;
  const errors = check.diagnostics.filter((d) => d.severity === 'error');
  if (servers !== FILES * PAIRS * 2 || check.diagnostics.length > 0) {
    throw new Error(
      `generated folder is not clean: ${servers} servers, ${check.diagnostics.length} diagnostics (${errors[0]?.message ?? ''})`,
    );
  }
  await yamlOnly(dir);

  const validateMs: number[] = [];
  const yamlMs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    // Interleaved, so drift (thermal, other load) hits both alike.
    validateMs.push((await time(() => loadConfig(dir)))[0]);
    yamlMs.push((await time(() => yamlOnly(dir)))[0]);
  }
  const v = median(validateMs);
  const y = median(yamlMs);
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`mailctl validate benchmark — ${new Date().toISOString().slice(0, 10)}`);
  console.log(
    `machine: ${cpu} × ${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}; Node ${process.version}`,
  );
  console.log(
    `input:   ${FILES} files, ${servers} EmailServer + ${check.flows.length} EmailFlow documents, ${(bytes / 2 ** 20).toFixed(1)} MiB`,
  );
  console.log(`runs:    ${RUNS} warm runs each, interleaved; median (min–max)`);
  console.log(
    `validate (loadConfig): ${v.toFixed(0)} ms (${Math.min(...validateMs).toFixed(0)}–${Math.max(...validateMs).toFixed(0)})`,
  );
  console.log(
    `yaml parse only:       ${y.toFixed(0)} ms (${Math.min(...yamlMs).toFixed(0)}–${Math.max(...yamlMs).toFixed(0)})`,
  );
  console.log(`ratio validate / parse: ${(v / y).toFixed(2)} (goal ≤ 2.0)`);
} finally {
  await rm(root, { recursive: true, force: true });
}
