/** The fields routing and the `.json` metadata read from a message's header (no ENVELOPE is fetched). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { messageFacts } from '../../../src/runtime/inbound/facts.js';

const source = (...lines: string[]) =>
  Buffer.from(`${lines.join('\r\n')}\r\n\r\nBody: not a header\r\nFrom: body@example.com\r\n`);

test('addresses, subject, date and Message-ID of an ordinary message', () => {
  const facts = messageFacts(
    source(
      'From: "Doe, Jane" <jane@example.com>',
      'To: support@example.com,',
      ' Bob <bob@example.org>',
      'Cc: Team: a@example.com, b@example.com;, c@example.com',
      'Subject: Invoice',
      '  #42',
      'Date: Fri, 27 Nov 2026 10:00:00 +0100',
      'Message-ID:',
      ' <abc.123@example.com>',
    ),
  );
  assert.equal(facts.from, ['jane@example.com']);
  assert.equal(facts.to, ['support@example.com', 'bob@example.org']);
  assert.equal(facts.cc, ['a@example.com', 'b@example.com', 'c@example.com'], 'groups are flattened');
  assert.is(facts.subject, 'Invoice #42', 'folded lines are unfolded');
  assert.is(facts.date, '2026-11-27T09:00:00.000Z');
  assert.is(facts.messageId, '<abc.123@example.com>');
  assert.equal(facts.headers.get('from'), ['"Doe, Jane" <jane@example.com>'], 'the body is not read as header');
});

test('encoded words and raw UTF-8 are decoded', () => {
  const facts = messageFacts(
    Buffer.concat([
      Buffer.from('Subject: =?UTF-8?B?w4RyZ2VyIG1pdCBkZXI=?= =?ISO-8859-1?Q?_Rechnung_=FC?=\r\n'),
      Buffer.from('From: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.de>\r\nTo: ', 'utf8'),
      Buffer.from('Zoë <zoe@example.com>\r\n\r\nbody', 'utf8'),
    ]),
  );
  assert.is(facts.subject, 'Ärger mit der Rechnung ü');
  assert.equal(facts.from, ['juergen@example.de']);
  assert.equal(facts.to, ['zoe@example.com']);
});

test('broken headers never throw: unparsable fields are empty', () => {
  const facts = messageFacts(
    Buffer.from(
      'From: <<<@@@,,,\r\nTo:\r\nCc: ;;;,,,@, x@, ok@example.com\r\nDate: garbage\r\nMessage-ID:   \r\nSubject: =?x-unknown?Q?abc?=\r\n\0\xff\r\n\r\n',
    ),
  );
  assert.equal(facts.from, [], 'no address in "<<<@@@,,,"');
  assert.equal(facts.to, []);
  assert.equal(facts.cc, ['ok@example.com'], 'the one real address of a broken list is kept');
  assert.is(facts.date, null);
  assert.is(facts.messageId, null);
  assert.is(facts.subject, 'abc', 'an encoded word in an unknown charset: its text as written');
  const empty = messageFacts(Buffer.alloc(0));
  assert.equal([empty.from, empty.subject, empty.date, empty.messageId], [[], '', null, null]);
  const headerOnly = messageFacts(Buffer.from('Subject: no body and no blank line'));
  assert.is(headerOnly.subject, 'no body and no blank line');
});

test('a Message-ID without angle brackets is kept as written; extra text around one is dropped', () => {
  assert.is(messageFacts(source('Message-ID: plain-id@example.com')).messageId, 'plain-id@example.com');
  assert.is(messageFacts(source('Message-ID: <a@b> (comment)')).messageId, '<a@b>');
});

test('no control character reaches a field: the subject has them replaced, an address or Message-ID with one is left out', () => {
  const crlf = Buffer.from('Hello\r\nInjected: yes\u0000\u0085\u2028!').toString('base64');
  const facts = messageFacts(
    source(
      `Subject: =?utf-8?B?${crlf}?=`,
      `From: =?utf-8?Q?a=01b?= <x@example.com>, bad\u0001@example.com`,
      'To: ok@example.com, also\u007fbad@example.com',
      'Message-ID: <id\u0002x@example.com>',
    ),
  );
  assert.is(facts.subject, 'Hello Injected: yes !');
  assert.equal(facts.from, ['x@example.com', 'bad@example.com'], 'the address parser drops C0 characters');
  assert.equal(facts.to, ['ok@example.com'], 'DEL is not dropped by the address parser');
  assert.is(facts.messageId, null);
});

test.run();
