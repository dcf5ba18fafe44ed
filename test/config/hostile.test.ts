// Hostile and malformed input: every case is a clear diagnostic with a position (code + line/column), never a throw
// or a stack trace, and Object.prototype stays clean. No timing asserts: a case that hangs fails by the runner's timeout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Diagnostic } from '../../src/config/diagnostics.js';
import type { LoadedConfig } from '../../src/config/load.js';
import { flow, imap, load, mailbox, showDiagnostics, smtp } from './helpers.js';

interface Case {
  name: string;
  input: string | Buffer;
  code: string;
  line: number;
  /** Exact column, or 'any' where it depends on the engine (stack depth). */
  column: number | 'any';
  severity?: 'error' | 'warning';
  message?: string[];
  /** Extra checks on the result. */
  check?: (r: LoadedConfig) => void;
}

const prototypeSnapshot = () => ({
  names: Object.getOwnPropertyNames(Object.prototype).sort().join(','),
  proto: Object.getPrototypeOf({}) === Object.prototype,
});
const BEFORE = prototypeSnapshot();

function assertPrototypeClean(): void {
  assert.equal(prototypeSnapshot(), BEFORE, 'Object.prototype changed');
  const probe = {} as Record<string, unknown>;
  for (const key of ['polluted', 'isAdmin', 'x', 'a'])
    assert.is(probe[key], undefined, `Object.prototype.${key} appeared`);
}

/** A deterministic byte soup (no crypto: the same bytes on every run). */
function garbage(length: number, seed = 7): Buffer {
  const out = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = x >> 16;
  }
  return out;
}

const FLOW = flow('support');
const deepBlock = (levels: number) =>
  `kind: EmailFlow\n${Array.from({ length: levels }, (_, i) => `${'  '.repeat(i)}k${i}:\n`).join('')}${'  '.repeat(levels)}v: 1\n`;
const server = (replace: [string, string][] = [], extra: string[] = []) =>
  replace.reduce((t, [a, b]) => t.replace(a, b), imap({ extra }));

const cases: Case[] = [
  // --- size ---
  {
    name: 'file over 1 MiB',
    input: Buffer.alloc(1024 * 1024 + 1, 0x23),
    code: 'file-too-large',
    line: 1,
    column: 1,
    message: ['1 MiB'],
  },
  {
    name: 'exactly 1 MiB of comment is read (and is empty)',
    input: `#${' '.repeat(1024 * 1024 - 2)}\n`,
    code: 'empty-file',
    line: 1,
    column: 1,
    severity: 'warning',
  },

  // --- aliases ---
  {
    name: 'billion laughs',
    input: `a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nkind: EmailFlow\n`,
    code: 'yaml-alias',
    line: 2,
    column: 8,
    message: ['*a', 'not allowed'],
  },
  {
    name: 'undefined alias',
    input: 'kind: EmailFlow\nname: *nope\n',
    code: 'yaml-alias',
    line: 2,
    column: 7,
    message: ['*nope'],
  },
  {
    name: 'a single harmless alias is refused too',
    input: `${FLOW}x: &dir inbound\ny: *dir\n`,
    code: 'yaml-alias',
    line: 8,
    column: 4,
  },
  {
    name: 'merge key with an alias',
    input: 'base: &base {host: x}\nkind: EmailFlow\n<<: *base\n',
    code: 'yaml-alias',
    line: 3,
    column: 5,
  },

  // --- duplicate keys ---
  {
    name: 'duplicate top-level key',
    input: 'kind: EmailFlow\nname: a\nname: b\n',
    code: 'duplicate-key',
    line: 3,
    column: 1,
  },
  {
    name: 'duplicate nested key',
    input: server([['  user: support@example.com', '  user: a@example.com\n  user: b@example.com']]),
    code: 'duplicate-key',
    line: 9,
    column: 3,
  },
  {
    name: 'duplicate key in a flow mapping',
    input: '{kind: EmailFlow, kind: EmailFlow}\n',
    code: 'duplicate-key',
    line: 1,
    column: 19,
  },
  {
    name: 'duplicate key spelled with quotes',
    input: 'kind: EmailFlow\nname: a\n"name": b\n',
    code: 'duplicate-key',
    line: 3,
    column: 1,
  },
  {
    name: 'ten thousand duplicate keys: a bounded number of diagnostics',
    input: `kind: EmailFlow\n${'name: a\n'.repeat(10_000)}`,
    code: 'duplicate-key',
    line: 3,
    column: 1,
    check: (r) => assert.ok(r.diagnostics.length <= 25, `${r.diagnostics.length} diagnostics`),
  },

  {
    name: '20,000 distinct unknown keys: linear checks, a bounded report',
    input: `kind: EmailFlow\nname: x\n${Array.from({ length: 20_000 }, (_, i) => `key${i}: v\n`).join('')}`,
    code: 'unknown-field',
    line: 3,
    column: 1,
    check: (r) => {
      assert.ok(r.diagnostics.length <= 25, `${r.diagnostics.length} diagnostics`);
      assert.ok(r.diagnostics.some((d) => /more problems .* not shown/.test(d.message)));
    },
  },

  // --- prototype keys ---
  {
    name: '__proto__ at top level',
    input: 'kind: EmailFlow\n__proto__:\n  polluted: 1\n',
    code: 'forbidden-key',
    line: 2,
    column: 1,
    message: ['__proto__'],
  },
  {
    name: '__proto__ nested',
    input: server([], ['deliver:', '  __proto__: {isAdmin: true}']),
    code: 'forbidden-key',
    line: 12,
    column: 3,
  },
  {
    name: 'constructor at top level',
    input: 'kind: EmailFlow\nconstructor: {prototype: {polluted: 1}}\n',
    code: 'forbidden-key',
    line: 2,
    column: 1,
    message: ['constructor'],
  },
  {
    name: 'prototype inside a list item',
    input: `${FLOW.replace('  - queue: general', '  - queue: general\n    prototype: {polluted: 1}')}`,
    code: 'forbidden-key',
    line: 5,
    column: 5,
    message: ['prototype'],
  },
  {
    name: 'quoted "__proto__"',
    input: 'kind: EmailFlow\n"__proto__": {polluted: 1}\n',
    code: 'forbidden-key',
    line: 2,
    column: 1,
  },
  {
    name: '__proto__ in a flow mapping',
    input: '{kind: EmailFlow, __proto__: {polluted: 1}}\n',
    code: 'forbidden-key',
    line: 1,
    column: 19,
  },
  {
    name: '__proto__ inside a << merge key (YAML 1.2: a plain key)',
    input: 'kind: EmailFlow\n<<: {__proto__: {polluted: 1}}\n',
    code: 'forbidden-key',
    line: 2,
    column: 6,
  },
  {
    name: '__proto__ merged by a %YAML 1.1 << key',
    input: '%YAML 1.1\n---\nkind: EmailFlow\n<<: {__proto__: {polluted: 1}}\n',
    code: 'forbidden-key',
    line: 4,
    column: 6,
  },
  {
    name: 'constructor and prototype merged from a %YAML 1.1 << list',
    input: '%YAML 1.1\n---\nkind: EmailFlow\n<<: [{constructor: 1}, {prototype: 2}]\n',
    code: 'forbidden-key',
    line: 4,
    column: 25,
    message: ['prototype'],
  },

  // --- depth ---
  { name: 'deep block nesting', input: deepBlock(40), code: 'too-deep', line: 34, column: 65 },
  {
    name: '10,000-deep flow sequence [[[[',
    input: `kind: EmailFlow\nx: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`,
    code: 'too-deep',
    line: 2,
    column: 'any',
  },
  {
    name: '10,000-deep flow mapping {a: {a:',
    input: `kind: EmailFlow\nx: ${'{a: '.repeat(10_000)}1${'}'.repeat(10_000)}\n`,
    code: 'too-deep',
    line: 2,
    column: 'any',
  },
  {
    name: 'unclosed 10,000-deep flow sequence',
    input: `kind: EmailFlow\nx: ${'['.repeat(10_000)}\n`,
    code: 'too-deep',
    line: 2,
    column: 'any',
    check: (r) => assert.ok(r.diagnostics.length <= 25, `${r.diagnostics.length} diagnostics`),
  },
  {
    name: '33-deep flow nesting (just over the limit)',
    input: `kind: EmailFlow\nx: ${'['.repeat(33)}${']'.repeat(33)}\n`,
    code: 'too-deep',
    line: 2,
    column: 35,
  },

  // --- encoding ---
  {
    name: 'Latin-1 byte (non-UTF-8) reports line and column',
    input: Buffer.from('kind: EmailFlow\nname: caf\xe9\n', 'latin1'),
    code: 'not-utf8',
    line: 2,
    column: 10,
    message: ['0xe9', 'UTF-8'],
  },
  {
    name: 'invalid byte after valid multibyte text',
    input: Buffer.concat([
      Buffer.from('# ünïcödé\nkind: EmailFlow\nname: ok\ndescription: x'),
      Buffer.from([0xff]),
      Buffer.from('\n'),
    ]),
    code: 'not-utf8',
    line: 4,
    column: 15,
  },
  {
    name: 'overlong UTF-8 encoding of "/"',
    input: Buffer.concat([Buffer.from('kind: EmailFlow\nname: a'), Buffer.from([0xc0, 0xaf]), Buffer.from('\n')]),
    code: 'not-utf8',
    line: 2,
    column: 8,
  },
  {
    name: 'UTF-8-encoded surrogate',
    input: Buffer.concat([Buffer.from('kind: EmailFlow\nname: a'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('\n')]),
    code: 'not-utf8',
    line: 2,
    column: 8,
  },
  {
    name: 'truncated multibyte sequence at the end',
    input: Buffer.concat([Buffer.from('kind: EmailFlow\nname: a'), Buffer.from([0xe2, 0x82])]),
    code: 'not-utf8',
    line: 2,
    column: 8,
  },
  {
    name: 'UTF-16 file',
    input: Buffer.from('\ufeffkind: EmailFlow\n', 'utf16le'),
    code: 'not-utf8',
    line: 1,
    column: 1,
  },
  {
    name: 'binary garbage',
    input: Buffer.concat([Buffer.from([0xff]), garbage(4096)]),
    code: 'not-utf8',
    line: 1,
    column: 1,
    message: ['0xff'],
  },
  {
    name: 'binary garbage that is valid UTF-8 (control bytes)',
    input: Buffer.from(
      Array.from({ length: 512 }, (_, i) => [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 27, 31, 127][i % 14]!),
    ),
    code: 'not-a-mapping',
    line: 1,
    column: 1,
  },

  // --- whitespace, line endings ---
  {
    name: 'tab indentation',
    input: 'kind: EmailFlow\ndeliver:\n\tdirectory: x\n',
    code: 'yaml-syntax',
    line: 3,
    column: 1,
    message: ['tabs', 'spaces'],
  },
  { name: 'empty file', input: '', code: 'empty-file', line: 1, column: 1, severity: 'warning' },
  { name: 'whitespace-only file', input: '   \n\n \t \n', code: 'empty-file', line: 1, column: 1, severity: 'warning' },
  {
    name: 'comment-only file',
    input: '# yaml-language-server: $schema=../schema/mailctl.schema.json\n# nothing yet\n',
    code: 'empty-file',
    line: 1,
    column: 1,
    severity: 'warning',
  },
  {
    name: 'only document separators',
    input: '---\n---\n...\n',
    code: 'empty-file',
    line: 1,
    column: 1,
    severity: 'warning',
  },
  {
    name: 'many blank lines before a document (regex backtracking regression)',
    input: `${'\n'.repeat(40)}${' \n'.repeat(40)}kind: EmailFlow\n`,
    code: 'missing-field',
    line: 81,
    column: 1,
    message: ['"name"'],
  },
  {
    name: 'lone CR line endings (classic Mac)',
    input: 'kind: EmailFlow\rname: x\r',
    code: 'line-ending',
    line: 1,
    column: 16,
    message: ['CRLF'],
  },

  // --- document shape ---
  {
    name: 'scalar document',
    input: 'just some text\n',
    code: 'not-a-mapping',
    line: 1,
    column: 1,
    message: ['single value'],
  },
  {
    name: 'list document',
    input: '- kind: EmailFlow\n  name: x\n',
    code: 'not-a-mapping',
    line: 1,
    column: 1,
    message: ['list'],
  },
  { name: 'explicit null document', input: '~\n', code: 'not-a-mapping', line: 1, column: 1 },
  {
    name: 'multi-document file with one syntax error: the other documents still load',
    input: `${imap()}---\nkind: EmailFlow\nname: [unclosed\n---\n${smtp()}---\n${FLOW}`,
    code: 'yaml-syntax',
    line: 14,
    column: 1,
    check: (r) => assert.equal(r.servers.map((s) => s.id).sort(), ['imap/support', 'smtp/support']),
  },
  {
    name: 'multi-document file with a list document in the middle',
    input: `${mailbox('support')}---\n- a\n- b\n---\n${mailbox('sales')}`,
    code: 'not-a-mapping',
    line: 29,
    column: 1,
    check: (r) => assert.is(r.servers.length, 4),
  },
  {
    name: 'garbage after the document end marker',
    input: 'kind: EmailFlow\n...\ngarbage\n',
    code: 'not-a-mapping',
    line: 3,
    column: 1,
  },
  { name: 'no kind', input: 'type: imap\nhost: x\n', code: 'missing-kind', line: 1, column: 1 },
  { name: 'kind as a list', input: 'kind: [EmailServer]\n', code: 'unknown-kind', line: 1, column: 7 },
  { name: 'kind with a homoglyph', input: 'kind: EmaiIServer\n', code: 'unknown-kind', line: 1, column: 7 },

  // --- syntax ---
  {
    name: 'unterminated double quote',
    input: 'kind: "EmailFlow\nname: x\n',
    code: 'yaml-syntax',
    line: 3,
    column: 1,
    message: ['quote'],
  },
  { name: 'unterminated single quote', input: "kind: EmailFlow\nname: 'x\n", code: 'yaml-syntax', line: 3, column: 1 },
  {
    name: 'unterminated flow sequence',
    input: 'kind: EmailFlow\nroutes: [a, b\nname: x\n',
    code: 'yaml-syntax',
    line: 3,
    column: 1,
  },
  {
    name: 'unterminated flow mapping',
    input: 'kind: EmailFlow\ndeliver: {directory: x\n',
    code: 'yaml-syntax',
    line: 3,
    column: 1,
  },
  {
    name: 'unquoted ${...} inside a flow mapping',
    input: `${FLOW.replace('  directory: inbound/support', '  webhook: {url: https://h.example.com, secret: ${env:X}}')}`,
    code: 'yaml-syntax',
    line: 6,
    column: 'any',
  },
  {
    name: 'complex (non-string) key',
    input: '? [a, b]\n: 1\nkind: EmailFlow\n',
    code: 'yaml-syntax',
    line: 1,
    column: 3,
  },
  {
    name: 'bad indentation',
    input: 'kind: EmailFlow\nname: x\n  routes: []\n',
    code: 'yaml-syntax',
    line: 2,
    column: 7,
  },

  // --- tags ---
  {
    name: '!!js/function tag',
    input: "kind: EmailFlow\nname: !!js/function 'function () { return process.exit(1) }'\n",
    code: 'yaml-tag',
    line: 2,
    column: 7,
    message: ['!!js/function'],
  },
  {
    name: '!!js/undefined tag',
    input: 'kind: EmailFlow\nname: !!js/undefined ~\n',
    code: 'yaml-tag',
    line: 2,
    column: 7,
  },
  {
    name: 'verbatim js/regexp tag',
    input: 'kind: EmailFlow\nname: !<tag:yaml.org,2002:js/regexp> /x/\n',
    code: 'yaml-tag',
    line: 2,
    column: 7,
  },
  {
    name: 'custom local tag',
    input: 'kind: !Ref EmailFlow\n',
    code: 'yaml-tag',
    line: 1,
    column: 7,
    message: ['!Ref'],
  },
  { name: '!!binary tag', input: 'kind: EmailFlow\nname: !!binary aGVsbG8=\n', code: 'yaml-tag', line: 2, column: 7 },
  { name: '!!set tag', input: `${FLOW}x: !!set {a, b}\n`, code: 'yaml-tag', line: 7, column: 4 },
  {
    name: '!!timestamp under %YAML 1.1 (would be a Date)',
    input: '%YAML 1.1\n---\nkind: EmailFlow\nname: !!timestamp 2001-12-14\n',
    code: 'yaml-tag',
    line: 4,
    column: 19,
    message: ['date'],
  },
  {
    name: 'unknown directive',
    input: `%EVIL 1\n---\n${mailbox('support')}`,
    code: 'yaml-warning',
    line: 1,
    column: 1,
    severity: 'warning',
  },

  // --- values ---
  {
    name: 'huge float',
    input: server([], ['port: 1e400']),
    code: 'invalid-type',
    line: 11,
    column: 7,
    message: ['Infinity'],
  },
  {
    name: 'huge integer',
    input: server([], ['port: 99999999999999999999999999']),
    code: 'invalid-value',
    line: 11,
    column: 7,
    message: ['65535'],
  },
  {
    name: '.nan',
    input: server([], ['maxMessageSize: .nan']),
    code: 'invalid-type',
    line: 11,
    column: 17,
    message: ['NaN'],
  },
  { name: 'negative port', input: server([], ['port: -993']), code: 'invalid-value', line: 11, column: 7 },
  {
    name: 'wrong types everywhere',
    input:
      'kind: EmailServer\ntype: imap\nname: 5\nshortName: [a]\nhost: {a: 1}\nport: "993"\ntls: yes\nauth: basic\nenabled: 1\n',
    code: 'invalid-type',
    line: 3,
    column: 7,
    check: (r) => {
      const at = r.diagnostics.filter((d) => d.code === 'invalid-type').map((d) => `${d.line}:${d.column}`);
      assert.equal(at, ['3:7', '4:12', '5:7', '6:7', '7:6', '8:7', '9:10']);
    },
  },
  {
    name: 'type as a mapping',
    input: 'kind: EmailServer\ntype: {imap: true}\n',
    code: 'invalid-value',
    line: 2,
    column: 7,
  },
  {
    name: 'very long string value is refused without echoing it',
    input: server([['name: Inbox support', `name: ${'x'.repeat(200_000)}`]]),
    code: 'invalid-value',
    line: 3,
    column: 7,
    check: (r) => assert.ok(r.diagnostics.every((d) => d.message.length < 300)),
  },
  {
    name: 'very long unknown key is clipped in the message',
    input: server([], [`${'k'.repeat(1000)}: 1`]),
    code: 'unknown-field',
    line: 11,
    column: 1,
    check: (r) => assert.ok(r.diagnostics.every((d) => d.message.length < 300)),
  },
  {
    name: 'very long unknown kind is clipped',
    input: `kind: ${'K'.repeat(100_000)}\n`,
    code: 'unknown-kind',
    line: 1,
    column: 7,
    check: (r) => assert.ok(r.diagnostics[0]!.message.length < 200),
  },
  {
    name: 'control character in a value (raw U+2028)',
    input: 'kind: EmailFlow\nname: a\u2028b\n',
    code: 'control-character',
    line: 2,
    column: 7,
    message: ['U+2028'],
  },
  {
    name: 'raw NUL in a value',
    input: 'kind: EmailFlow\nname: a\u0000b\n',
    code: 'control-character',
    line: 2,
    column: 7,
    message: ['U+0000'],
  },
  {
    name: 'header injection in auth.user',
    input: server([['  user: support@example.com', '  user: "a@example.com\\r\\nBcc: all@example.com"']]),
    code: 'control-character',
    line: 8,
    column: 9,
  },
  {
    name: 'control character in a key',
    input: 'kind: EmailFlow\n"na\\u2029me": x\n',
    code: 'control-character',
    line: 2,
    column: 1,
    message: ['key'],
  },
  {
    name: 'thousands of small bad documents: every one reported, nothing thrown',
    input: '---\nname: x\n'.repeat(3000),
    code: 'missing-kind',
    line: 2,
    column: 1,
    check: (r) => assert.is(r.diagnostics.length, 3000),
  },
];

for (const c of cases) {
  test(c.name, () => {
    let result: LoadedConfig | undefined;
    try {
      result = load({ 'hostile.yaml': c.input });
    } catch (err) {
      assert.unreachable(`threw: ${(err as Error)?.stack ?? String(err)}`);
    }
    const r = result!;
    const hit = r.diagnostics.find(
      (d: Diagnostic) =>
        d.code === c.code && d.line === c.line && (c.column === 'any' ? d.column >= 1 : d.column === c.column),
    );
    assert.ok(hit, `expected ${c.code} at ${c.line}:${c.column}; got:\n${showDiagnostics(r.diagnostics.slice(0, 10))}`);
    assert.is(hit.severity, c.severity ?? 'error');
    assert.is(hit.file, 'servers.d/hostile.yaml');
    for (const m of c.message ?? [])
      assert.ok(hit.message.includes(m), `message should contain ${JSON.stringify(m)}: ${hit.message}`);
    if ((c.severity ?? 'error') === 'error') assert.not.ok(r.valid);
    for (const d of r.diagnostics) {
      assert.ok(d.line >= 1 && d.column >= 1, 'every diagnostic has a position');
      assert.not.match(d.message, /\n\s+at /, 'no stack trace in a message');
      assert.not.match(
        d.message,
        /Maximum call stack|ReferenceError|TypeError/,
        `an internal error leaked: ${d.message}`,
      );
    }
    c.check?.(r);
    assertPrototypeClean();
  });
}

test('CRLF line endings are fine (positions as with LF)', () => {
  const r = load({ 'a.yaml': mailbox('support').replace(/\n/g, '\r\n') });
  assert.is(r.diagnostics.length, 0, showDiagnostics(r.diagnostics));
  const bad = load({ 'a.yaml': mailbox('support', ['storageFolder: INBOX']).replace(/\n/g, '\r\n') });
  assert.equal(
    bad.diagnostics.map((d) => `${d.line}:${d.column}:${d.code}`),
    ['11:16:storage-folder-equals-folder'],
  );
});

test('a UTF-8 BOM is fine (also with CRLF)', () => {
  assert.is(load({ 'a.yaml': `\ufeff${mailbox('support')}` }).diagnostics.length, 0);
  const both = load({ 'a.yaml': `\ufeff${mailbox('support', ['port: 0'])}`.replace(/\n/g, '\r\n') });
  assert.equal(
    both.diagnostics.map((d) => `${d.line}:${d.column}:${d.code}`),
    ['11:7:invalid-value'],
  );
});

test(`at least 40 hostile cases (${cases.length})`, () => {
  assert.ok(cases.length >= 40);
  assertPrototypeClean();
});

test.run();
