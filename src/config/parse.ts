import { isMap, isScalar, LineCounter, parseAllDocuments, visit, type Document, type Node } from 'yaml';
import type { Diagnostic, Position } from './diagnostics.js';
import type { SourceFile } from './files.js';

/** Deeper than this is no configuration anyone writes by hand; refusing it keeps every later walk cheap. */
const MAX_DEPTH = 32;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
// C0 and C1 controls except TAB, plus DEL and the Unicode line/paragraph separators.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]/;

/** One YAML document of a file, parsed, with what is needed to point at any of its nodes. */
export interface ParsedDocument {
  file: string;
  /** 0-based index of the document in its file. */
  index: number;
  doc: Document.Parsed;
  lineCounter: LineCounter;
  value: Record<string, unknown>;
}

export interface ParsedFile {
  documents: ParsedDocument[];
  diagnostics: Diagnostic[];
}

type PathSegment = string | number;

function diagnostic(file: string, pos: Position, code: string, message: string): Diagnostic {
  return { file, line: pos.line, column: pos.column, severity: 'error', code, message, resource: null };
}

function positionAt(lineCounter: LineCounter, offset: number): Position {
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/** Position of the node at `path` (its key for `atKey`), or of the deepest existing ancestor. */
export function locate(parsed: Pick<ParsedDocument, 'doc' | 'lineCounter'>, path: readonly PathSegment[], atKey = false): Position {
  let node: unknown = parsed.doc.contents;
  let keyNode: Node | null = null;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) break;
      keyNode = pair.key as Node;
      node = pair.value;
    } else if (node && typeof node === 'object' && 'items' in node && Array.isArray((node as { items: unknown[] }).items)) {
      const next = (node as { items: unknown[] }).items[Number(segment)];
      if (next === undefined) break;
      keyNode = null;
      node = next;
    } else break;
  }
  const target = (atKey && keyNode) || (node as Node | null);
  const offset = target?.range?.[0] ?? 0;
  return positionAt(parsed.lineCounter, offset);
}

/** Offset of the first byte that is not valid UTF-8, or -1. */
function firstInvalidUtf8(bytes: Buffer): number {
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (need < 0 || i + need >= bytes.length + (need === 0 ? 1 : 0)) return i;
    for (let k = 1; k <= need; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return -1;
}

function decode(file: SourceFile): { text: string } | { error: Diagnostic } {
  const bad = firstInvalidUtf8(file.bytes);
  if (bad >= 0) {
    const before = file.bytes.subarray(0, bad);
    const line = before.filter((b) => b === 0x0a).length + 1;
    const column = bad - before.lastIndexOf(0x0a);
    return {
      error: diagnostic(file.displayPath, { line, column }, 'not-utf8', `byte 0x${file.bytes[bad]!.toString(16).padStart(2, '0')} is not valid UTF-8; save the file as UTF-8`),
    };
  }
  const text = file.bytes.toString('utf8');
  return { text: text.charCodeAt(0) === 0xfeff ? text.slice(1) : text };
}

/**
 * Walks a converted document once: finds forbidden keys, control characters and excessive depth.
 * Works on the plain JS value (fast) and only looks up YAML positions for what it reports.
 */
function checkValues(parsed: ParsedDocument, diagnostics: Diagnostic[]): void {
  const report = (path: PathSegment[], atKey: boolean, code: string, message: string) =>
    diagnostics.push(diagnostic(parsed.file, locate(parsed, path, atKey), code, message));
  const walk = (value: unknown, path: PathSegment[]): void => {
    if (typeof value === 'string') {
      if (CONTROL_CHARACTER.test(value)) {
        const ch = CONTROL_CHARACTER.exec(value)![0].charCodeAt(0).toString(16).padStart(4, '0');
        report(path, false, 'control-character', `${describePath(path)} contains the control character U+${ch.toUpperCase()}; line breaks and control characters are not allowed in values`);
      }
      return;
    }
    if (value === null || typeof value !== 'object') return;
    if (path.length >= MAX_DEPTH) {
      report(path, false, 'too-deep', `nesting deeper than ${MAX_DEPTH} levels is not allowed`);
      return;
    }
    if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, [...path, i]));
      return;
    }
    for (const key of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(key)) {
        report([...path, key], true, 'forbidden-key', `the key "${key}" is not allowed`);
        continue;
      }
      if (CONTROL_CHARACTER.test(key)) {
        report([...path, key], true, 'control-character', `a key contains a control character`);
        continue;
      }
      walk((value as Record<string, unknown>)[key], [...path, key]);
    }
  };
  walk(parsed.value, []);
}

export function describePath(path: readonly PathSegment[]): string {
  if (path.length === 0) return 'the document';
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

function firstAliasPosition(doc: Document.Parsed, lineCounter: LineCounter): Position & { name: string } {
  let found: Position & { name: string } = { line: 1, column: 1, name: '' };
  visit(doc, {
    Alias(_key, node) {
      found = { ...positionAt(lineCounter, node.range?.[0] ?? 0), name: node.source };
      return visit.BREAK;
    },
  });
  return found;
}

/**
 * Parses one file into documents. Never throws: every problem (encoding, YAML syntax, aliases,
 * duplicate keys, forbidden keys, depth, non-mapping documents) becomes a positioned diagnostic.
 */
export function parseFile(file: SourceFile): ParsedFile {
  const decoded = decode(file);
  if ('error' in decoded) return { documents: [], diagnostics: [decoded.error] };
  const { text } = decoded;
  const name = file.displayPath;
  const diagnostics: Diagnostic[] = [];
  const documents: ParsedDocument[] = [];
  if (text.trim() === '' || /^(\s*(#.*)?\n?)*$/.test(text)) {
    return { documents, diagnostics: [{ ...diagnostic(name, { line: 1, column: 1 }, 'empty-file', `${name} holds no resources`), severity: 'warning' }] };
  }
  const lineCounter = new LineCounter();
  let docs: Document.Parsed[];
  try {
    const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true, merge: false, stringKeys: true });
    docs = Array.isArray(parsed) ? parsed : [];
  } catch (err) {
    return { documents, diagnostics: [diagnostic(name, { line: 1, column: 1 }, 'yaml-syntax', `YAML could not be parsed: ${(err as Error).message}`)] };
  }
  docs.forEach((doc, index) => {
    const syntax = doc.errors.map((e) =>
      diagnostic(name, positionAt(lineCounter, e.pos[0]), e.code === 'DUPLICATE_KEY' ? 'duplicate-key' : 'yaml-syntax', yamlMessage(e.code, e.message)),
    );
    if (syntax.length) return void diagnostics.push(...syntax);
    if (doc.contents === null) return; // an empty document between `---` separators
    if (!isMap(doc.contents)) {
      const pos = positionAt(lineCounter, doc.contents.range?.[0] ?? 0);
      return void diagnostics.push(diagnostic(name, pos, 'not-a-mapping', 'a document must be a mapping with `kind` and its fields'));
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 0 });
    } catch (err) {
      const alias = firstAliasPosition(doc, lineCounter);
      const message = /alias/i.test((err as Error).message)
        ? `YAML aliases (*${alias.name}) are not allowed; write the value out`
        : `the document could not be read: ${(err as Error).message}`;
      return void diagnostics.push(diagnostic(name, alias, 'yaml-alias', message));
    }
    const parsedDocument: ParsedDocument = { file: name, index, doc, lineCounter, value: value as Record<string, unknown> };
    const before = diagnostics.length;
    checkValues(parsedDocument, diagnostics);
    if (diagnostics.length === before) documents.push(parsedDocument);
  });
  if (documents.length === 0 && diagnostics.length === 0) {
    diagnostics.push({ ...diagnostic(name, { line: 1, column: 1 }, 'empty-file', `${name} holds no resources`), severity: 'warning' });
  }
  return { documents, diagnostics };
}

function yamlMessage(code: string, message: string): string {
  switch (code) {
    case 'DUPLICATE_KEY':
      return 'duplicate key: each key may appear once in a mapping';
    case 'TAB_AS_INDENT':
      return 'tabs are not allowed for indentation in YAML; indent with spaces';
    default:
      return message.replace(/\s+/g, ' ').trim();
  }
}
