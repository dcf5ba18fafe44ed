/**
 * Secrets quoted back by a server never leave the daemon or reach its state folder: an SMTP server that quotes the
 * AUTH PLAIN line (the password in base64) in its 535 reply, and one that quotes it in a 5xx to a message, against
 * `apply` output, `applied.json`, `state pull`, `/v1/status`, `/status.json`, the outbox and everything stored.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { REDACTED, secretForms } from '../../src/runtime/daemon/scrubber.js';
import { smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const USER = 'agent@example.com';
const CANARY = 'CANARY-quoted-9b2e71';
/** What the server quotes: the client's AUTH PLAIN blob. */
const BLOB = Buffer.from(`\0${USER}\0${CANARY}`).toString('base64');

let stack: MailStack;
let daemon: DaemonProcess;
/** The output of every daemon this file stopped. */
const outputs: string[] = [];

async function restart(): Promise<void> {
  outputs.push(daemon.output());
  await daemon.stop();
  daemon = await stack.startDaemon();
}

test.before(async () => {
  stack = await startMailStack({
    users: { [USER]: CANARY },
    folders: {},
    smtp: { users: { [USER]: 'not-the-canary' }, quoteAuth: true },
  });
  const password = await stack.ref(USER);
  await stack.ws.writeServer(
    'smtp.yaml',
    smtpYaml({ shortName: 'agent', user: USER, port: stack.smtp.port, caFile: stack.smtp.caFile, password }),
  );
  daemon = await stack.startDaemon();
});

test.after(async () => {
  await stack?.stop();
});

/** Fails when `text` holds the canary in any form the scrubber knows (raw, base64, AUTH PLAIN, URL-encoded...). */
function clean(text: string, where: string): void {
  for (const form of [BLOB, ...secretForms(CANARY, USER)]) assert.not.ok(text.includes(form), `${where}: ${form}`);
}

async function stateFolderText(): Promise<string> {
  const names = await readdir(stack.ws.stateDir, { recursive: true });
  const texts = await Promise.all(
    names.map(async (name) => {
      const file = path.join(stack.ws.stateDir, name);
      return (await stat(file)).isFile() ? readFile(file, 'utf8') : '';
    }),
  );
  return texts.join('\n');
}

test('a 535 quoting the AUTH line: apply output, applied.json and state pull hold no form of the password', async () => {
  const r = await cli(['apply', '--dir', stack.ws.dir, '--save-failed-as-disabled'], stack.ws.env);
  assert.is(r.code, 4, r.stdout + r.stderr);
  assert.match(r.stdout, /smtp\/agent: Connection failed: auth: .*\[REDACTED\]/, 'the reply was quoted and scrubbed');
  clean(r.stdout + r.stderr, 'apply output');
  const json = await cli(['apply', '--dir', stack.ws.dir, '--json'], stack.ws.env);
  clean(json.stdout, 'apply --json');
  const applied = await readFile(path.join(stack.ws.stateDir, 'applied.json'), 'utf8');
  assert.match(applied, /verification failed: auth: .*\[REDACTED\]/);
  clean(applied, 'applied.json');
  const pulled = await cli(['state', 'pull'], stack.ws.env);
  assert.is(pulled.code, 0, pulled.stderr);
  assert.ok(pulled.stdout.includes(REDACTED));
  clean(pulled.stdout, 'state pull');
  // the pulled state is exactly what the daemon plans against: a plan saved from it is not stale
  const stateFile = path.join(stack.ws.root, 'state.json');
  await writeFile(stateFile, pulled.stdout);
  const planFile = path.join(stack.ws.root, 'plan.json');
  const plan = await cli(['plan', '--dir', stack.ws.dir, '--state', stateFile, '--out', planFile], stack.ws.env);
  assert.is(plan.code, 0, plan.stdout + plan.stderr);
  const saved = await cli(['apply', planFile, '--dry-run'], stack.ws.env);
  assert.not.match(saved.stdout, /stale/, saved.stdout);
});

test('a running loop that gets the 535 on restart: /v1/status and /status.json show it scrubbed', async () => {
  stack.smtp.addUser(USER, CANARY);
  const r = await cli(['apply', '--dir', stack.ws.dir], stack.ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  stack.smtp.addUser(USER, 'changed-by-the-admin');
  await restart();
  const status = await eventually(
    async () => {
      const body = (await daemon.api('GET', '/v1/status')).body;
      return body.servers?.find((s: { id: string }) => s.id === 'smtp/agent')?.lastError ? body : null;
    },
    20_000,
    'a last error for smtp/agent',
  );
  const text = JSON.stringify(status);
  assert.ok(text.includes(REDACTED), text);
  clean(text, '/v1/status');
  const page = await (await fetch(`${daemon.url}/status.json`)).text();
  assert.ok(page.includes(REDACTED), page);
  clean(page, '/status.json');
  clean((await cli(['status', '--json'], stack.ws.env)).stdout, 'mailctl status');
});

test('a 5xx to a message quoting the secret: the outbox entry, outbox list and the stored events are scrubbed', async () => {
  stack.smtp.addUser(USER, CANARY);
  await restart();
  stack.smtp.failNext(1, 554, `5.7.1 rejected after AUTH PLAIN ${BLOB}`);
  const sent = await daemon.api('POST', '/v1/outbound', { from: USER, to: ['c@example.org'], subject: 's', text: 'x' });
  assert.is(sent.status, 202, JSON.stringify(sent.body));
  const failed = await eventually(
    async () => {
      const body = (await daemon.api('GET', `/v1/outbound/${sent.body.id}`)).body;
      return body.state === 'failed' && body;
    },
    20_000,
    'the message failed',
  );
  assert.ok(JSON.stringify(failed).includes(REDACTED), JSON.stringify(failed));
  clean(JSON.stringify(failed), 'GET /v1/outbound/ID');
  clean((await cli(['outbox', 'list', '--json'], stack.ws.env)).stdout, 'outbox list');
});

test('nothing in the state folder or the logs holds any form of the password', async () => {
  clean(await stateFolderText(), 'state folder');
  for (const output of [...outputs, daemon.output()]) clean(output, 'daemon output');
});

test.run();
