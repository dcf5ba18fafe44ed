/**
 * `deliver.directory` must lead below a --sink-root (default: the state folder and /var/lib/mailctl): a flow writing
 * elsewhere is refused at apply, named; one whose folder is later made to lead elsewhere (a link) delivers nothing
 * there: its polls fail (config) and the message waits, unseen.
 */
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { flowYaml, imapYaml } from '../harness/fixtures.js';
import { cli, eventually } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const USER = 'support@example.com';
let stack: MailStack;
let elsewhere: string;

test.before(async () => {
  stack = await startMailStack({ users: { [USER]: 'sink-pass' } });
  elsewhere = await mkdtemp(path.join(tmpdir(), 'mailctl-elsewhere-'));
  await stack.ws.writeServer(
    'imap.yaml',
    imapYaml({
      shortName: 'support',
      user: USER,
      port: stack.dovecot.ports.imap,
      caFile: stack.dovecot.caFile,
      password: await stack.ref(USER),
      pollSchedule: '*/10 * * * * *',
    }),
  );
  await stack.startDaemon();
});

test.after(async () => {
  await stack?.stop();
  await rm(elsewhere, { recursive: true, force: true });
});

const apply = () => cli(['apply', '--dir', stack.ws.dir], stack.ws.env);

test('a flow delivering outside every --sink-root is refused at apply, naming the flow', async () => {
  await stack.ws.writeServer('flow.yaml', flowYaml('main', path.join(elsewhere, 'queues')));
  const r = await apply();
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(
    r.stdout,
    /refused-config: email flow "main": deliver\.directory .*queues is not inside a folder allowed by --sink-root \(.*\/state, \/var\/lib\/mailctl\)/,
  );
  assert.equal(await readdir(elsewhere), []);
});

test('a folder inside the state folder is allowed; made to lead elsewhere later, it gets no mail', async () => {
  await stack.ws.writeServer('flow.yaml', flowYaml('main', 'queues'));
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  const queues = path.join(stack.ws.stateDir, 'queues');
  await rm(queues, { recursive: true, force: true });
  await mkdir(path.join(elsewhere, 'taken'));
  await symlink(path.join(elsewhere, 'taken'), queues);
  await stack.dovecot.deliver(USER, 'Subject: hello\r\nMessage-ID: <sink-1@example.org>\r\n\r\nbody\r\n');
  const server = await eventually(
    async () => {
      const s = (JSON.parse((await cli(['status', '--json'], stack.ws.env)).stdout) as { servers: any[] }).servers[0];
      return s?.lastError?.class === 'config' && s;
    },
    30_000,
    'a failed poll of imap/support',
  );
  assert.is(server.lastError.class, 'config');
  assert.match(server.lastError.message, /email flow "main": deliver\.directory .* --sink-root/);
  assert.equal(await readdir(path.join(elsewhere, 'taken')), []);
  const [message] = await stack.dovecot.listMessages(USER);
  assert.ok(message && !message.flags.includes('\\Seen'), 'the message waits, unseen');
  const again = await apply();
  assert.is(again.code, 1, 'and the next apply is refused');
  assert.match(again.stdout, /refused-config: email flow "main"/);
});

test.run();
