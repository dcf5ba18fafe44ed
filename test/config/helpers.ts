/**
 * Helpers for the config tests: in-memory sources, documents whose line numbers are fixed (so a test can say
 * "line 11" and mean the first extra line), and assertions on diagnostics by code + position.
 */
import * as assert from 'uvu/assert';
import type { Diagnostic } from '../../src/config/diagnostics.js';
import type { SourceFile } from '../../src/config/files.js';
import { loadSources, type LoadedConfig } from '../../src/config/load.js';

export const source = (name: string, text: string | Buffer): SourceFile => ({
  displayPath: `servers.d/${name}`,
  relativePath: name,
  bytes: typeof text === 'string' ? Buffer.from(text, 'utf8') : text,
});

/** Loads files given as `{ 'name.yaml': text }`. */
export const load = (files: Record<string, string | Buffer>): LoadedConfig =>
  loadSources(Object.entries(files).map(([name, text]) => source(name, text)));

export interface DocOptions {
  shortName?: string;
  name?: string;
  user?: string;
  host?: string;
  /** imap only; null leaves line 10 as a comment (no flow). */
  flow?: string | null;
  /** Lines appended after the fixed part: imap from line 11, smtp from line 10. */
  extra?: string[];
}

/**
 * An IMAP server, always 10 lines before `extra`:
 * 1 kind, 2 type, 3 name, 4 shortName, 5 host, 6 auth:, 7 type, 8 user, 9 password, 10 flow.
 */
export function imap(o: DocOptions = {}): string {
  const short = o.shortName ?? 'support';
  return [
    'kind: EmailServer',
    'type: imap',
    `name: ${o.name ?? `Inbox ${short}`}`,
    `shortName: ${short}`,
    `host: ${o.host ?? 'imap.example.com'}`,
    'auth:',
    '  type: basic',
    `  user: ${o.user ?? `${short}@example.com`}`,
    '  password: "${env:MAILCTL_SECRET_PW}"',
    o.flow === null ? '# no flow' : `flow: ${o.flow ?? 'support'}`,
    ...(o.extra ?? []),
    '',
  ].join('\n');
}

/** An SMTP server, always 9 lines before `extra` (same layout as imap without the flow line). */
export function smtp(o: DocOptions = {}): string {
  const short = o.shortName ?? 'support';
  return [
    'kind: EmailServer',
    'type: smtp',
    `name: ${o.name ?? `Outbox ${short}`}`,
    `shortName: ${short}`,
    `host: ${o.host ?? 'smtp.example.com'}`,
    'auth:',
    '  type: basic',
    `  user: ${o.user ?? `${short}@example.com`}`,
    '  password: "${env:MAILCTL_SECRET_PW}"',
    ...(o.extra ?? []),
    '',
  ].join('\n');
}

/** A flow, always 6 lines before `extra`: 1 kind, 2 name, 3 routes:, 4 `- queue: general`, 5 deliver:, 6 directory. */
export function flow(name = 'support', extra: string[] = []): string {
  return [
    'kind: EmailFlow',
    `name: ${name}`,
    'routes:',
    '  - queue: general',
    'deliver:',
    `  directory: inbound/${name}`,
    ...extra,
    '',
  ].join('\n');
}

/** imap + smtp for the same user and the flow they use: no diagnostics at all. */
export const mailbox = (short = 'support', imapExtra: string[] = [], smtpExtra: string[] = []): string =>
  [
    imap({ shortName: short, flow: short, extra: imapExtra }),
    smtp({ shortName: short, extra: smtpExtra }),
    flow(short),
  ].join('---\n');

const show = (ds: readonly Diagnostic[]) =>
  ds.map((d) => `  ${d.file}:${d.line}:${d.column} ${d.severity}[${d.code}] ${d.message}`).join('\n') || '  (none)';

/** Every code seen by `expectDiagnostic`: the coverage test compares it with the codes in the sources. */
export const coveredCodes = new Set<string>();

export interface Expected {
  code: string;
  line: number;
  column: number;
  file?: string;
  severity?: 'error' | 'warning';
  /** Substrings the message must contain. */
  message?: (string | RegExp)[];
  resource?: string | null;
}

/** Asserts a diagnostic with this code at this position exists (and returns it). */
export function expectDiagnostic(result: { diagnostics: readonly Diagnostic[] }, e: Expected): Diagnostic {
  const withCode = result.diagnostics.filter((d) => d.code === e.code);
  const found = withCode.find(
    (d) => d.line === e.line && d.column === e.column && (e.file === undefined || d.file === e.file),
  );
  if (!found) {
    assert.unreachable(`expected ${e.code} at ${e.line}:${e.column}; got:\n${show(result.diagnostics)}`);
    throw new Error('unreachable');
  }
  assert.is(found.severity, e.severity ?? 'error', `severity of ${e.code}`);
  for (const m of e.message ?? []) {
    if (typeof m === 'string')
      assert.ok(
        found.message.includes(m),
        `message of ${e.code} should contain ${JSON.stringify(m)}: ${found.message}`,
      );
    else assert.match(found.message, m);
  }
  if (e.resource !== undefined) assert.is(found.resource, e.resource, `resource of ${e.code}`);
  assert.ok(found.file.length > 0 && found.line >= 1 && found.column >= 1);
  assert.ok(found.message.length > 10, 'a message a person can act on');
  coveredCodes.add(e.code);
  return found;
}

/** Asserts exactly one diagnostic, with this code and position. */
export function expectOnly(result: { diagnostics: readonly Diagnostic[] }, e: Expected): Diagnostic {
  const d = expectDiagnostic(result, e);
  assert.is(result.diagnostics.length, 1, `exactly one diagnostic expected:\n${show(result.diagnostics)}`);
  return d;
}

export function expectClean(result: { diagnostics: readonly Diagnostic[]; valid?: boolean }): void {
  assert.is(result.diagnostics.length, 0, `no diagnostics expected:\n${show(result.diagnostics)}`);
  if (result.valid !== undefined) assert.ok(result.valid);
}

export function expectNoCode(result: { diagnostics: readonly Diagnostic[] }, code: string): void {
  const hits = result.diagnostics.filter((d) => d.code === code);
  assert.is(hits.length, 0, `no ${code} expected:\n${show(result.diagnostics)}`);
}

export { show as showDiagnostics };
