/**
 * Crash safety of the outbox, run against each store by its test files (outbound-crash.test.ts, the state folder;
 * outbound-crash-postgres.test.ts, PostgreSQL): 500 queued messages, the daemon SIGKILLed at random moments mid-stream
 * and restarted each time. Every message is sent at least once, duplicates share their Message-ID, none is lost, each
 * has exactly one sent copy in the storage folder; with the file store, a truncated outbox file is quarantined, not
 * sent.
 */
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { type SmtpTestServer } from '../harness/smtp.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const AGENT = 'agent@example.com';
const STORAGE = 'ContactStorage';
const COUNT = 500;
const KILLS = 5;

let stack: MailStack;
let dovecot: Dovecot;
let smtp: SmtpTestServer;
let ws: Workspace;
let daemon: DaemonProcess;

/** The test against one store (its test file names it). */
export function outboundCrashTest(store: 'file' | 'postgres'): void {
  test.before(async () => {
    stack = await startMailStack({
      users: { [AGENT]: 'agent-pass' },
      folders: { [AGENT]: [STORAGE] },
      smtp: true,
      store,
    });
    ({ dovecot, smtp, ws } = stack);
    const ref = await stack.ref(AGENT);
    await ws.writeServer('flow.yaml', flowYaml());
    await ws.writeServer(
      'imap.yaml',
      imapYaml({
        shortName: 'agent',
        user: AGENT,
        port: dovecot.ports.imap,
        caFile: dovecot.caFile,
        password: ref,
        storageFolder: STORAGE,
      }),
    );
    await ws.writeServer(
      'smtp.yaml',
      smtpYaml({ shortName: 'agent', user: AGENT, port: smtp.port, caFile: smtp.caFile, password: ref }),
    );
    daemon = await stack.startDaemon(['--no-watch']);
    const r = await cli(['apply', '--dir', ws.dir], ws.env);
    assert.is(r.code, 0, r.stdout + r.stderr);
  });

  test.after(async () => {
    await stack?.stop();
  });

  test(`${store} store: SIGKILL ${KILLS} times while ${COUNT} messages are queued: none lost, duplicates share the Message-ID, one sent copy each`, async () => {
    const accepted = new Map<string, string>(); // messageId → id
    for (let i = 0; i < COUNT; i += 50) {
      const answers = await Promise.all(
        Array.from({ length: Math.min(50, COUNT - i) }, (_, j) =>
          daemon.api('POST', '/v1/outbound', {
            from: AGENT,
            to: 'customer@example.org',
            subject: `crash ${i + j}`,
            text: `message ${i + j}\n${'x'.repeat(2000)}`,
          }),
        ),
      );
      for (const a of answers) {
        assert.is(a.status, 202, JSON.stringify(a.body));
        accepted.set(a.body.messageId, a.body.id);
      }
    }
    const outbox = path.join(ws.stateDir, 'outbox');
    let midStream = 0; // kills that came while some accepted message had not reached the SMTP server yet
    for (let k = 0; k < KILLS; k++) {
      // kill after a random number of further messages reached the SMTP server (mid-stream, not between runs)
      const target = smtp.messages.length + 10 + Math.floor(Math.random() * 60);
      await eventually(
        () => smtp.messages.length >= target || smtp.messages.length >= COUNT,
        30_000,
        `${target} messages received`,
      );
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 30)));
      await daemon.kill();
      if (new Set(smtp.messages.map((m) => m.messageId)).size < COUNT) midStream++;
      if (k === 0 && store === 'file')
        await writeFile(
          path.join(outbox, '11111111-2222-4333-8444-555555555555.msg'),
          'MAILCTL-OUTBOX 1 5000\n{"formatVersion":1,"message":{"id":"1111',
          { mode: 0o600 },
        );
      daemon = await stack.startDaemon(['--no-watch']);
    }
    assert.ok(midStream >= 3, `only ${midStream} of ${KILLS} kills came while messages were still being sent`);
    const settled = await eventually(
      async () => {
        const list = await daemon.api('GET', '/v1/outbound');
        return list.status === 200 && list.body.outbox.length === 0 ? list.body : null;
      },
      60_000,
      'outbox empty',
    );
    assert.is(settled.quarantined, 0, 'quarantine count of the last start');
    if (store === 'file') {
      const quarantined = await readdir(path.join(outbox, 'quarantine'));
      assert.is(quarantined.length, 1, 'the truncated file was quarantined');
    }

    const byId = new Map<string, number>();
    for (const m of smtp.messages) if (m.messageId) byId.set(m.messageId, (byId.get(m.messageId) ?? 0) + 1);
    const lost = [...accepted.keys()].filter((mid) => !byId.has(mid));
    assert.equal(lost, [], 'every accepted message was sent');
    const strangers = [...byId.keys()].filter((mid) => !accepted.has(mid));
    assert.equal(strangers, [], 'nothing else was sent (with the file store: the truncated file was not)');
    const duplicates = [...byId.values()].filter((n) => n > 1).length;
    assert.ok(
      smtp.messages.every((m) => m.messageId && accepted.has(m.messageId)),
      'every resend carries the original Message-ID',
    );

    const stored = await dovecot.listMessages(AGENT, STORAGE);
    const copies = new Map<string, number>();
    for (const m of stored) if (m.messageId) copies.set(m.messageId, (copies.get(m.messageId) ?? 0) + 1);
    assert.equal(
      [...accepted.keys()].filter((mid) => copies.get(mid) !== 1),
      [],
      'exactly one sent copy each',
    );
    assert.is(stored.length, COUNT);
    for (const [mid, id] of [...accepted].slice(0, 20)) {
      const s = await daemon.api('GET', `/v1/outbound/${id}`);
      assert.is(s.body.state, 'sent', mid);
    }
    console.log(
      `  ${store} store, ${KILLS} kills: ${smtp.messages.length} deliveries for ${COUNT} messages (${duplicates} duplicated)`,
    );
  });

  test.run();
}
