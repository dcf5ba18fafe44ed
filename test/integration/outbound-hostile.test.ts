/**
 * Hostile lengths in every field of `POST /v1/outbound`, against a real daemon: each request is refused with 400, and
 * `/livez` keeps answering while they are being checked (the checks are linear; an address is at most 254 characters).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createWorkspace, startDaemon, type DaemonProcess, type Workspace } from '../harness/mailctl.js';

/** Long enough that a quadratic check blocks the event loop for many seconds (150 KB: 10.7 s before the fix). */
const N = 150_000;
/** A valid request; each case replaces one field. */
const base = { from: 'agent@example.com', to: ['customer@example.org'], subject: 'Hello', text: 'Hi' };
/** What made the old address pattern backtrack: a long domain followed by a character it refuses. */
const address = `a@${'b'.repeat(N)}<`;
const attachment = { name: 'a.pdf', contentType: 'application/pdf', content: 'QUJD' };

const CASES: Record<string, Record<string, unknown>> = {
  from: { from: address },
  to: { to: [address] },
  'to (a bare string)': { to: address },
  'to (a long list)': { to: Array.from({ length: N }, () => '<') },
  cc: { cc: [address] },
  bcc: { bcc: [address] },
  'an address of 255 characters': { to: [`${'a'.repeat(64)}@${'b'.repeat(190)}`] },
  subject: { subject: `${'x '.repeat(N)}\n` },
  'subject (no control character)': { subject: 'x'.repeat(N) },
  text: { text: Array.from({ length: N }, () => 'x') },
  html: { html: Array.from({ length: N }, () => 'x') },
  inReplyTo: { inReplyTo: `support.${'1.'.repeat(N)}x` },
  kind: { kind: 'a'.repeat(N) },
  'attachments (a long list)': { attachments: Array.from({ length: N }, () => 'x') },
  'attachments[0].name': { attachments: [{ ...attachment, name: 'a'.repeat(N) }] },
  'attachments[0].contentType': { attachments: [{ ...attachment, contentType: `a/${'b'.repeat(N)}/` }] },
  'attachments[0].content': { attachments: [{ ...attachment, content: `A${'\n'.repeat(N)}!` }] },
};

let ws: Workspace;
let daemon: DaemonProcess;

test.before(async () => {
  ws = await createWorkspace();
  daemon = await startDaemon(ws, ['--no-watch', '--log-level', 'warn']);
});

test.after(async () => {
  await daemon?.kill().catch(() => undefined);
  await ws?.cleanup();
});

/** /livez answers each time while `work` runs (a blocked event loop would not answer at all within 5 s). */
async function livezWhile(work: Promise<unknown>): Promise<number> {
  let done = false;
  void work.finally(() => (done = true)).catch(() => undefined);
  let answers = 0;
  do {
    const res = await fetch(`${daemon.url}/livez`, { signal: AbortSignal.timeout(5_000) });
    assert.is(res.status, 200);
    await res.text();
    answers += 1;
    await new Promise((r) => setTimeout(r, 20));
  } while (!done);
  return answers;
}

for (const [field, change] of Object.entries(CASES)) {
  test(`a hostile ${field} is refused with 400 while /livez keeps answering`, async () => {
    const post = daemon.api('POST', '/v1/outbound', { ...base, ...change });
    const answers = await livezWhile(post);
    const { status, body } = await post;
    assert.is(status, 400, JSON.stringify(body).slice(0, 300));
    assert.ok(answers >= 1);
    assert.ok(JSON.stringify(body).length < 2_000, 'the refusal does not echo the whole value');
  });
}

test('an address of exactly 254 characters is still an address', async () => {
  const { status, body } = await daemon.api('POST', '/v1/outbound', {
    ...base,
    to: [`${'a'.repeat(64)}@${'b'.repeat(189)}`],
  });
  // refused only because no SMTP server is applied here, after the addresses passed
  assert.is(status, 422, JSON.stringify(body));
});

test.run();
