/** Routing: the linear-time glob matcher, first-match-wins routes and auto-reply / bounce detection. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  globMatch,
  isAutoReply,
  parseHeaders,
  routeMessage,
  type MessageFacts,
} from '../../../src/runtime/inbound/route.js';

test('glob: literals, *, ? and case-insensitivity', () => {
  const yes: [string, string][] = [
    ['*invoice*', 'Your INVOICE for May'],
    ['*@example.com', 'Bob@Example.COM'],
    ['a?c', 'abc'],
    ['*', ''],
    ['**', 'x'],
    ['a*b*c', 'aXXbYYc'],
    ['*.com', '.com'],
    ['?*', 'x'],
    ['abc', 'ABC'],
    ['*a', 'aaaa'],
    ['a*', 'a'],
  ];
  const no: [string, string][] = [
    ['*invoice*', 'receipt'],
    ['a?c', 'ac'],
    ['a?c', 'abbc'],
    ['abc', 'abcd'],
    ['abc', 'ab'],
    ['?', ''],
    ['a*b', 'aXXbc'],
    ['*.com', 'example.org'],
  ];
  for (const [p, t] of yes) assert.ok(globMatch(p, t), `${p} ~ ${t}`);
  for (const [p, t] of no) assert.not.ok(globMatch(p, t), `${p} !~ ${t}`);
});

test('glob: regex metacharacters are literal', () => {
  assert.ok(globMatch('a.b(c)[d]+', 'A.B(C)[D]+'));
  assert.not.ok(globMatch('a.b', 'axb'));
  assert.ok(globMatch('^$|\\', '^$|\\'));
});

test('glob: pathological pattern on a long string is answered correctly (linear matcher)', () => {
  const long = 'a'.repeat(100_000);
  assert.not.ok(globMatch('*a*a*a*a*a*b', long));
  assert.ok(globMatch('*a*a*a*a*a*b', `${long}b`));
  assert.not.ok(globMatch('*a*a*a*a*a*a*a*a*a*a*a*a*c', `${'a'.repeat(50_000)}b`));
});

const facts = (over: Partial<MessageFacts> & { raw?: string } = {}): MessageFacts => ({
  from: over.from ?? ['customer@example.org'],
  to: over.to ?? ['support@example.com'],
  subject: over.subject ?? 'Hello',
  headers: over.headers ?? parseHeaders(over.raw ?? 'Subject: Hello\r\n\r\n'),
});

const flow = {
  routes: [
    { queue: 'vip', when: { from: ['*@vip.example', 'boss@*'] } },
    { queue: 'billing', when: { subject: '*invoice*' } },
    { queue: 'sales', when: { to: 'sales@*' } },
    { queue: 'tagged', when: { header: { name: 'X-Tag', value: 'urgent*' } } },
    { queue: 'both', when: { from: '*@partner.example', subject: 'order*' } },
    { queue: 'general' },
  ] as [any, ...any[]],
  autoReplies: 'deliver' as const,
};

test('routes: first match wins; every matcher of a route must match', () => {
  const q = (f: MessageFacts) => {
    const d = routeMessage(flow, f);
    return d.action === 'deliver' ? d.queue : d.action;
  };
  assert.is(q(facts({ from: ['Boss@corp.example'], subject: 'invoice' })), 'vip');
  assert.is(q(facts({ subject: 'Re: Invoice 42' })), 'billing');
  assert.is(q(facts({ to: ['someone@x', 'SALES@example.com'] })), 'sales', 'to matches To or Cc');
  assert.is(q(facts({ raw: 'X-Tag: Urgent please\r\n\r\n' })), 'tagged');
  assert.is(q(facts({ from: ['a@partner.example'], subject: 'question' })), 'general');
  assert.is(q(facts({ from: ['a@partner.example'], subject: 'Order 7' })), 'both');
  assert.is(q(facts()), 'general');
  assert.is(
    routeMessage({ routes: [{ queue: 'x', when: { subject: 'no' } }], autoReplies: 'deliver' }, facts()).action,
    'unrouted',
  );
});

test('auto-reply and bounce detection', () => {
  const auto = (raw: string) => isAutoReply(parseHeaders(`${raw}\r\nSubject: x\r\n\r\nbody`));
  assert.ok(auto('Auto-Submitted: auto-replied'));
  assert.ok(auto('Auto-Submitted: auto-generated; owner-email="x@y"'));
  assert.not.ok(auto('Auto-Submitted: no'));
  assert.not.ok(auto('auto-submitted: No'));
  assert.ok(auto('X-Autoreply: yes'));
  assert.ok(auto('Precedence: bulk'));
  assert.ok(auto('Precedence: auto_reply'));
  assert.ok(auto('Precedence: JUNK'));
  assert.not.ok(auto('Precedence: list'));
  assert.ok(auto('Content-Type: multipart/report;\r\n report-type=delivery-status;\r\n boundary="b"'));
  assert.ok(auto('Content-Type: multipart/report; report-type="delivery-status"; boundary=b'));
  assert.not.ok(auto('Content-Type: multipart/report; report-type=disposition-notification; boundary=b'));
  assert.not.ok(auto('Content-Type: text/plain'));
  assert.not.ok(auto('From: a@b'));
});

test('autoReplies policy: deliver (flagged), queue, drop', () => {
  const f = facts({ subject: 'Out of office: invoice', raw: 'Auto-Submitted: auto-replied\r\n\r\n' });
  assert.equal(routeMessage(flow, f), { action: 'deliver', queue: 'billing', autoReply: true, route: 1 });
  assert.equal(routeMessage({ ...flow, autoReplies: { queue: 'auto' } }, f), {
    action: 'deliver',
    queue: 'auto',
    autoReply: true,
    route: 'autoReplies',
  });
  assert.is(routeMessage({ ...flow, autoReplies: 'drop' }, f).action, 'drop');
  assert.equal(routeMessage({ ...flow, autoReplies: 'drop' }, facts({ subject: 'invoice' })), {
    action: 'deliver',
    queue: 'billing',
    autoReply: false,
    route: 1,
  });
});

test('parseHeaders tolerates broken input', () => {
  assert.equal(
    [...parseHeaders('garbage without colon\r\n: empty name\r\n\tfolded orphan\r\nA: 1\r\n  2\r\n\r\nBody: no')],
    [['a', ['1 2']]],
  );
  assert.equal(parseHeaders(undefined).size, 0);
});

test.run();
