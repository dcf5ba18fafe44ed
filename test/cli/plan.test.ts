import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config/load.js';
import { nextBindings } from '../../src/plan/bindings.js';
import { desiredState } from '../../src/plan/desired.js';
import type { ObservedState } from '../../src/plan/model.js';
import { parsePlanFile, parseStateFile, serializePlanFile, serializeStateFile } from '../../src/plan/planfile.js';

const CANARY = 'CANARY-PLAN-SECRET-1234';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sink(): Writable & { text: string } {
  const w = new Writable({
    write(chunk, _enc, done) {
      w.text += String(chunk);
      done();
    },
  }) as Writable & { text: string };
  w.text = '';
  return w;
}

let root = '';
let dir = '';
let secretFile = '';
/** Never the real state folder or daemon of the machine running the tests. */
let baseEnv: NodeJS.ProcessEnv = {};

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const stdout = sink();
  const stderr = sink();
  const code = await main(argv, { stdout, stderr, env: { ...baseEnv, ...env } });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const yaml = (secretPath: string) => `kind: EmailServer
type: imap
name: Support inbox
shortName: support
host: imap.example.com
auth:
  type: basic
  user: support@example.com
  password: \${env:SUPPORT_PASSWORD}
flow: support
---
kind: EmailServer
type: smtp
name: Support outbound
shortName: support
host: smtp.example.com
auth:
  type: basic
  user: support@example.com
  password: \${file:${secretPath}}
---
kind: EmailFlow
name: support
routes:
  - queue: vip
    when:
      from: "*@vip.example.com"
  - queue: support
deliver:
  directory: inbox/support
`;

/** The state the daemon would report after applying the folder as it is. */
async function appliedState(): Promise<ObservedState> {
  const config = await loadConfig(dir);
  const desired = desiredState(config.servers, config.flows);
  const servers: ObservedState['servers'] = Object.fromEntries(
    Object.entries(desired.servers).map(([id, c]) => [id, { config: c, status: 'active' as const }]),
  );
  return { servers, bindings: nextBindings({}, servers, new Set(Object.keys(servers))), revision: null };
}

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-plan-'));
  dir = path.join(root, 'servers.d');
  secretFile = path.join(root, 'smtp-password');
  await writeFile(secretFile, `${CANARY}\n`, { mode: 0o600 });
  await import('node:fs/promises').then((fs) => fs.mkdir(dir));
  await writeFile(path.join(dir, 'support.yaml'), yaml(secretFile));
  baseEnv = {
    NO_COLOR: '1',
    MAILCTL_STATE_DIR: path.join(root, 'no-daemon-here'),
    SUPPORT_PASSWORD: CANARY,
    PATH: process.env.PATH,
  };
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

// ---- where the running state comes from -------------------------------------------------------------------------------

test('--state empty: plans a first deployment (exit 0; --detailed-exitcode 2)', async () => {
  const r = await run(['plan', '--dir', dir, '--state', 'empty']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /\+ imap\/support will be created/);
  assert.match(r.stdout, /\+ smtp\/support will be created/);
  assert.match(r.stdout, /Plan: 2 to create, 0 to update, 0 to restart, 0 to stop, 0 to delete, 0 need approval\.\n$/);
  assert.match(r.stdout, /an empty running state \(first deployment\)/);
  const detailed = await run(['plan', '--dir', dir, '--state', 'empty', '--detailed-exitcode']);
  assert.is(detailed.code, 2);
});

test('--state FILE: a pulled state that matches the folder: no changes (0, also with --detailed-exitcode)', async () => {
  const file = path.join(root, 'state.json');
  await writeFile(file, serializeStateFile(await appliedState()));
  const r = await run(['plan', '--dir', dir, '--state', file, '--detailed-exitcode']);
  assert.is(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /No changes\. The running servers match the folder\.\n$/);
  assert.match(r.stdout, /the running state saved in /);
});

test('--state FILE: a change against the pulled state (2 with --detailed-exitcode)', async () => {
  const state = await appliedState();
  state.servers['imap/support']!.config.spec.name = 'Old name';
  const file = path.join(root, 'state-old.json');
  await writeFile(file, serializeStateFile(state));
  const r = await run(['plan', '--dir', dir, '--state', file, '--detailed-exitcode']);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stdout, /~ imap\/support will be updated in place/);
  assert.match(r.stdout, /-name: Old name\n +\+name: Support inbox/);
});

test('--state FILE: missing, not a state file, or edited after the pull: exit 1 with a clear message', async () => {
  const missing = await run(['plan', '--dir', dir, '--state', path.join(root, 'nope.json')]);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /cannot read the state file .*nope\.json: it does not exist/);

  const planFile = path.join(root, 'a-plan.json');
  await writeFile(
    planFile,
    serializePlanFile({
      dir,
      createdAt: '2025-01-01T00:00:00.000Z',
      plan: JSON.parse((await run(['plan', '--dir', dir, '--state', 'empty', '--json'])).stdout),
    }),
  );
  const wrongKind = await run(['plan', '--dir', dir, '--state', planFile]);
  assert.is(wrongKind.code, 1);
  assert.match(wrongKind.stderr, /not a state file \(it is a plan file\)/);

  const edited = JSON.parse(serializeStateFile(await appliedState()));
  edited.state.servers['imap/support'].config.spec.host = 'evil.example.net';
  const editedFile = path.join(root, 'edited.json');
  await writeFile(editedFile, JSON.stringify(edited));
  const tampered = await run(['plan', '--dir', dir, '--state', editedFile]);
  assert.is(tampered.code, 1);
  assert.match(tampered.stderr, /changed after it was pulled/);
});

test('no daemon and no --state: fails (exit 1) naming the three ways to give the running state', async () => {
  const r = await run(['plan', '--dir', dir]);
  assert.is(r.code, 1);
  assert.is(r.stdout, '');
  assert.match(r.stderr, /no daemon found/);
  assert.match(r.stderr, /--server URL/);
  assert.match(r.stderr, /--state FILE/);
  assert.match(r.stderr, /--state empty/);
  const json = await run(['plan', '--dir', dir, '--json']);
  assert.is(json.code, 1);
  assert.is(JSON.parse(json.stdout).error.code, 'daemon-unreachable');
});

test('a daemon that does not answer: exit 1 with the options', async () => {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const r = await run(['plan', '--dir', dir, '--server', `http://127.0.0.1:${port}`]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /cannot reach the daemon at http:\/\/127\.0\.0\.1:\d+/);
  assert.match(r.stderr, /--state empty/);
});

test('--state with --server is refused', async () => {
  const r = await run(['plan', '--dir', dir, '--state', 'empty', '--server', 'http://127.0.0.1:1']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /--state empty replaces the daemon: drop --server/);
});

test('against a running daemon (GET /v1/state with the token), and state pull round-trips into --state FILE', async () => {
  const state = await appliedState();
  const seen: { url?: string; auth?: string }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, auth: req.headers.authorization });
    if (req.headers.authorization !== 'Bearer test-token') {
      res.writeHead(401).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ formatVersion: '1', state }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const tokenFile = path.join(root, 'token');
  await writeFile(tokenFile, 'test-token\n');
  try {
    const plan = await run(['plan', '--dir', dir, '--server', url, '--token-file', tokenFile, '--detailed-exitcode']);
    assert.is(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /with the running state of the daemon at http:\/\/127\.0\.0\.1:\d+\./);
    assert.match(plan.stdout, /No changes\./);
    assert.equal(seen.at(-1), { url: '/v1/state', auth: 'Bearer test-token' });

    const pulled = await run(['state', 'pull', '--server', url], { MAILCTL_TOKEN: 'test-token' });
    assert.is(pulled.code, 0, pulled.stderr);
    const parsed = parseStateFile(pulled.stdout);
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
    if (parsed.ok) assert.equal(parsed.value.state, state);
    const file = path.join(root, 'pulled.json');
    await writeFile(file, pulled.stdout);
    assert.is((await run(['plan', '--dir', dir, '--state', file, '--detailed-exitcode'])).code, 0);

    const refused = await run(['plan', '--dir', dir, '--server', url]);
    assert.is(refused.code, 1);
    assert.match(refused.stderr, /refused the API token/);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('a daemon answering with a malformed state is not planned against', async () => {
  const server = http.createServer((_req, res) => {
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(
        JSON.stringify({ formatVersion: '1', state: { servers: { 'imap/x': { status: 'active' } }, bindings: {} } }),
      );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const r = await run(['plan', '--dir', dir, '--server', url]);
    assert.is(r.code, 1);
    assert.match(r.stderr, /malformed state: state\.servers\["imap\/x"\]\.config must be an object/);
    const pull = await run(['state', 'pull', '--server', url]);
    assert.is(pull.code, 1);
    assert.is(pull.stdout, '');
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('state: only the pull subcommand', async () => {
  const r = await run(['state', 'push']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /unknown subcommand "push"/);
});

// ---- folder, output formats, files -------------------------------------------------------------------------------

test('an invalid folder: diagnostics with file:line:col, exit 1, no daemon needed', async () => {
  const bad = path.join(root, 'bad.d');
  await import('node:fs/promises').then((fs) => fs.mkdir(bad));
  await writeFile(
    path.join(bad, 'x.yaml'),
    'kind: EmailServer\ntype: imap\nname: X\nshortName: x\nhost: imap.example.com\nfolder: INBOX\nstorageFolder: INBOX\nflow: nope\nauth:\n  type: basic\n  user: x@example.com\n  password: ${env:X}\n',
  );
  const r = await run(['plan', '--dir', bad]);
  assert.is(r.code, 1);
  assert.match(r.stdout, /x\.yaml:7:16: error\[storage-folder-equals-folder\]/);
  assert.match(r.stdout, /no plan was computed/);
  assert.not.match(r.stderr, /daemon/);
  const json = await run(['plan', '--dir', bad, '--json', '--state', 'empty', '--detailed-exitcode']);
  assert.is(json.code, 1);
  const body = JSON.parse(json.stdout);
  assert.is(body.formatVersion, '1');
  assert.is(body.valid, false);
  assert.ok(body.diagnostics.some((d: { code: string }) => d.code === 'flow-not-found'));
  const missing = await run(['plan', '--dir', path.join(root, 'does-not-exist'), '--state', 'empty']);
  assert.is(missing.code, 1);
  assert.match(missing.stdout, /folder-unreadable/);
});

test('--json: formatVersion, digests, and every change with action and symbol', async () => {
  const r = await run(['plan', '--dir', dir, '--state', 'empty', '--json']);
  assert.is(r.code, 0, r.stderr);
  const body = JSON.parse(r.stdout);
  assert.is(body.formatVersion, '1');
  assert.match(body.desiredDigest, /^sha256:[0-9a-f]{64}$/);
  assert.match(body.stateDigest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(
    body.changes.map((c: { id: string; action: string; symbol: string }) => [c.id, c.action, c.symbol]),
    [
      ['imap/support', 'create', '+'],
      ['smtp/support', 'create', '+'],
    ],
  );
  assert.equal(body.summary, { create: 2, update: 0, restart: 0, stop: 0, delete: 0, needApproval: 0 });
  assert.equal(body.stateSource, { kind: 'empty' });
  assert.is(body.dir, dir);
});

test('--out: writes a parsable plan file (0600) with the digests of the folder and of the running state', async () => {
  const out = path.join(root, 'plan.out');
  const r = await run(['plan', '--dir', dir, '--state', 'empty', '--out', out, '--json']);
  assert.is(r.code, 0, r.stderr);
  const body = JSON.parse(r.stdout);
  assert.is(body.planFile, out);
  const info = await stat(out);
  assert.is(info.mode & 0o777, 0o600);
  const parsed = parsePlanFile(await readFile(out, 'utf8'));
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
  if (!parsed.ok) return;
  assert.is(parsed.value.kind, 'mailctl-plan');
  assert.is(parsed.value.dir, dir);
  assert.ok(!Number.isNaN(Date.parse(parsed.value.createdAt)));
  assert.is(parsed.value.plan.desiredDigest, body.desiredDigest);
  assert.is(parsed.value.plan.stateDigest, body.stateDigest);
  assert.equal(
    parsed.value.plan.changes.map((c) => c.action),
    ['create', 'create'],
  );
  const leftovers = (await import('node:fs/promises').then((fs) => fs.readdir(root))).filter((f) => f.endsWith('.tmp'));
  assert.equal(leftovers, []);

  const text = await run(['plan', '--dir', dir, '--state', 'empty', '--out', out]);
  assert.match(text.stdout, /Saved the plan to .*plan\.out\. Apply exactly this plan with: mailctl apply /);
  const unwritable = await run([
    'plan',
    '--dir',
    dir,
    '--state',
    'empty',
    '--out',
    path.join(root, 'no', 'such', 'dir', 'plan'),
  ]);
  assert.is(unwritable.code, 1);
  assert.match(unwritable.stderr, /cannot write the plan file/);
});

test('parsePlanFile / parseStateFile: clear errors', () => {
  const bad = (text: string) => {
    const r = parsePlanFile(text);
    return r.ok ? 'ok' : r.error;
  };
  assert.match(bad('not json'), /^not a plan file: it is not valid JSON/);
  assert.match(bad('[1]'), /^not a plan file: expected a JSON object/);
  assert.match(bad('{"kind":"terraform"}'), /^not a plan file: expected "kind": "mailctl-plan"/);
  assert.match(bad('{"kind":"mailctl-plan","formatVersion":"2"}'), /unsupported plan file formatVersion "2"/);
  assert.match(
    bad(
      '{"kind":"mailctl-plan","formatVersion":"1","dir":"d","createdAt":"2025-01-01T00:00:00Z","plan":{"formatVersion":"1","desiredDigest":"x"}}',
    ),
    /^malformed plan file: plan\.desiredDigest/,
  );
  const digest = `sha256:${'0'.repeat(64)}`;
  const plan = {
    formatVersion: '1',
    desiredDigest: digest,
    stateDigest: digest,
    changes: [{ id: 'imap/x', action: 'explode', changedFields: [], restartFields: [], reasons: [], rebinds: [] }],
    unchanged: [],
    summary: {},
  };
  assert.match(
    bad(
      JSON.stringify({ kind: 'mailctl-plan', formatVersion: '1', dir: 'd', createdAt: '2025-01-01T00:00:00Z', plan }),
    ),
    /plan\.changes\[0\]\.action must be one of/,
  );
  const ok = {
    ...plan,
    changes: [],
    summary: { create: 0, update: 0, restart: 0, stop: 0, delete: 0, needApproval: 0 },
  };
  assert.is(
    bad(
      JSON.stringify({
        kind: 'mailctl-plan',
        formatVersion: '1',
        dir: 'd',
        createdAt: '2025-01-01T00:00:00Z',
        plan: ok,
      }),
    ),
    'ok',
  );
  assert.match(
    bad(
      JSON.stringify({
        kind: 'mailctl-plan',
        formatVersion: '1',
        dir: 'd',
        createdAt: '2025-01-01T00:00:00Z',
        plan: { ...ok, summary: { ...ok.summary, create: 3 } },
      }),
    ),
    /plan\.summary\.create is 3 but the changes count 0/,
  );

  const state = (text: string) => {
    const r = parseStateFile(text);
    return r.ok ? 'ok' : r.error;
  };
  assert.match(
    state(
      '{"kind":"mailctl-state","formatVersion":"1","stateDigest":"sha256:00","state":{"servers":{},"bindings":{"__proto__":{}}}}',
    ),
    /the key must be a secret reference/,
  );
  assert.match(
    state(
      JSON.stringify({
        kind: 'mailctl-state',
        formatVersion: '1',
        stateDigest: digest,
        state: { servers: {}, bindings: {} },
      }),
    ),
    /changed after it was pulled/,
  );
  assert.is(state(serializeStateFile({ servers: {}, bindings: {}, revision: null })), 'ok');
  // a kept OAuth2 credential is bound under its id
  const target = { host: 'imap.example.com', port: 993, tls: true, allowPlaintext: false, boundBy: 'imap/support' };
  const kept = (key: string) =>
    state(
      serializeStateFile({ servers: {}, bindings: { [key]: [{ ...target, tokenUrl: 'https://t' }] }, revision: null }),
    );
  assert.is(kept('oauth2/0123456789ab'), 'ok');
  assert.match(kept('oauth2/../../etc'), /the key must be a secret reference/);
  assert.match(
    state(
      serializeStateFile({
        servers: {},
        bindings: { 'oauth2/0123456789ab': [{ ...target, tenant: 7 }] },
        revision: null,
      } as never),
    ),
    /\.tenant must be a string/,
  );
  assert.match(state('{"kind":"mailctl-state","formatVersion":1}'), /unsupported state file formatVersion 1/);
});

test('GITHUB_STEP_SUMMARY: the plan is appended as Markdown (earlier content kept)', async () => {
  const summary = path.join(root, 'step-summary.md');
  await writeFile(summary, '# Earlier step\n\n');
  const r = await run(['plan', '--dir', dir, '--state', 'empty'], { GITHUB_STEP_SUMMARY: summary });
  assert.is(r.code, 0, r.stderr);
  await run(['plan', '--dir', dir, '--state', 'empty', '--json'], { GITHUB_STEP_SUMMARY: summary });
  const md = await readFile(summary, 'utf8');
  assert.ok(md.startsWith('# Earlier step\n\n## mailctl plan\n'));
  assert.is(md.match(/^## mailctl plan$/gm)?.length, 2);
  assert.match(md, /\| `\+` \| `imap\/support` \| will be created \|/);
  assert.match(
    md,
    /<details><summary><code>\+ smtp\/support<\/code> will be created<\/summary>\n\n```diff\n--- \/dev\/null/,
  );
});

test('--format github (and GITHUB_ACTIONS=true): the text plan plus annotations for rebinds', async () => {
  const state = await appliedState();
  state.servers['imap/support']!.config.spec.host = 'imap-old.example.com';
  state.bindings['${env:SUPPORT_PASSWORD}'] = [
    { host: 'imap-old.example.com', port: 993, tls: true, allowPlaintext: false, boundBy: 'imap/support' },
  ];
  const file = path.join(root, 'state-rebind.json');
  await writeFile(file, serializeStateFile(state));
  const r = await run(['plan', '--dir', dir, '--state', file], { GITHUB_ACTIONS: 'true' });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /! imap\/support needs approval: credential rebind, then must be restarted/);
  assert.match(
    r.stdout,
    /\n::warning file=.*support\.yaml,line=5,col=7,title=mailctl plan%3A imap\/support needs approval \(credential rebind\)::credential rebind: /,
  );
  assert.match(r.stdout, /Plan: 0 to create, 0 to update, 1 to restart, 0 to stop, 0 to delete, 1 need approval\./);

  const approved = await run([
    'plan',
    '--dir',
    dir,
    '--state',
    file,
    '--approve-rebind',
    'imap/support',
    '--approve-rebind',
    'smtp/other',
    '--format',
    'github',
  ]);
  assert.match(approved.stdout, /::notice .*credential rebind approved for imap\/support/);
  assert.match(approved.stdout, /0 need approval\./);
  assert.match(
    approved.stderr,
    /--approve-rebind smtp\/other: smtp\/other has no credential rebind in this plan; ignored/,
  );
});

test('the canary secret value never appears: stdout, stderr, plan file, step summary', async () => {
  const out = path.join(root, 'canary-plan.out');
  const summary = path.join(root, 'canary-summary.md');
  const outputs: string[] = [];
  for (const format of ['text', 'json', 'github']) {
    const r = await run(['plan', '--dir', dir, '--state', 'empty', '--out', out, '--format', format], {
      GITHUB_STEP_SUMMARY: summary,
      MAILCTL_DEBUG: '1',
    });
    assert.is(r.code, 0, r.stderr);
    outputs.push(r.stdout, r.stderr, await readFile(out, 'utf8'));
  }
  outputs.push(await readFile(summary, 'utf8'));
  for (const text of outputs) assert.not.ok(text.includes(CANARY), 'canary leaked');
  assert.ok(outputs[0]!.includes('${env:SUPPORT_PASSWORD}'));
  assert.ok(outputs[0]!.includes(`\${file:${secretFile}}`));
});

test('help lists plan and state', async () => {
  const r = await run(['--help']);
  assert.match(r.stdout, /\n {2}plan +Show what apply would change/);
  assert.match(r.stdout, /\n {2}state +state pull/);
});

test.run();
