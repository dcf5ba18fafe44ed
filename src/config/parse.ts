import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Document, type Node } from 'yaml';
import { clip, diagnostic, type Diagnostic, type Position } from './diagnostics.js';
import { MAX_FILE_BYTES, type SourceFile } from './files.js';

/** Deeper than this is no configuration anyone writes by hand; refusing it keeps every later walk cheap. */
const MAX_DEPTH = 32;
/** A broken file can produce thousands of YAML errors; the first few say what is wrong. */
const MAX_SYNTAX_DIAGNOSTICS = 20;
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

function positionAt(lineCounter: LineCounter, offset: number): Position {
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/** Position of the node at `path` (its key for `atKey`), or of the deepest existing ancestor. */
export function locate(
  parsed: Pick<ParsedDocument, 'doc' | 'lineCounter'>,
  path: readonly PathSegment[],
  atKey = false,
): Position {
  let node: unknown = parsed.doc.contents;
  let keyNode: Node | null = null;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) break;
      keyNode = pair.key as Node;
      node = pair.value;
    } else if (
      node &&
      typeof node === 'object' &&
      'items' in node &&
      Array.isArray((node as { items: unknown[] }).items)
    ) {
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

/** Offset of the first byte that is not valid UTF-8 (overlong forms, surrogates and > U+10FFFF included), or -1. */
function firstInvalidUtf8(bytes: Buffer): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i += 1;
      continue;
    }
    const need = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (need < 0 || i + need >= bytes.length) return i;
    // The second byte's range is narrower after E0 (overlong), ED (surrogates), F0 (overlong) and F4 (> U+10FFFF).
    const second = bytes[i + 1]!;
    const [lo, hi] =
      b === 0xe0
        ? [0xa0, 0xbf]
        : b === 0xed
          ? [0x80, 0x9f]
          : b === 0xf0
            ? [0x90, 0xbf]
            : b === 0xf4
              ? [0x80, 0x8f]
              : [0x80, 0xbf];
    if (second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return -1;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function decode(file: SourceFile): { text: string } | { error: Diagnostic } {
  try {
    // Native and strict (throws on any invalid sequence); strips a leading BOM.
    return { text: utf8.decode(file.bytes) };
  } catch {
    const bad = Math.max(0, firstInvalidUtf8(file.bytes));
    const before = file.bytes.subarray(0, bad);
    const line = before.filter((b) => b === 0x0a).length + 1;
    const column = bad - before.lastIndexOf(0x0a);
    return {
      error: diagnostic(
        file.displayPath,
        { line, column },
        'not-utf8',
        `byte 0x${(file.bytes[bad] ?? 0).toString(16).padStart(2, '0')} is not valid UTF-8; save the file as UTF-8`,
      ),
    };
  }
}

/** V8 copies substrings shorter than this (SlicedString::kMinLength) instead of slicing. */
const V8_MIN_SLICE = 13;

/**
 * A copy of a string value that does not point into its file's text. V8 keeps a longer substring as a view of the
 * string it was cut from, so one value of a running server's spec would keep its whole YAML file in memory (a heap
 * snapshot of 1,000 loops held every file this way).
 */
const detached = (value: string): string =>
  value.length < V8_MIN_SLICE ? value : Buffer.from(value, 'utf8').toString('utf8');

/**
 * Converts a composed document to plain JS in one walk, checking as it goes: aliases, duplicate keys (a Set per
 * mapping: linear, unlike the parser's pairwise `uniqueKeys`), forbidden keys, control characters, depth, and
 * values made by YAML 1.1 tags. Positions come straight from the nodes. Returns null when anything was reported.
 */
function toCheckedValue(
  doc: Document.Parsed,
  lineCounter: LineCounter,
  file: string,
  diagnostics: Diagnostic[],
): Record<string, unknown> | null {
  const path: PathSegment[] = [];
  let problems = 0;
  const report = (
    node: { range?: readonly number[] | null } | null | undefined,
    code: string,
    message: () => string,
  ) => {
    if (problems++ < MAX_SYNTAX_DIAGNOSTICS)
      diagnostics.push(diagnostic(file, positionAt(lineCounter, node?.range?.[0] ?? 0), code, message()));
  };
  const convert = (node: unknown): unknown => {
    if (node === null || node === undefined) return null;
    if (isScalar(node)) {
      const value = node.value;
      if (typeof value === 'string') {
        const bad = CONTROL_CHARACTER.exec(value);
        if (bad) {
          const ch = bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
          report(
            node,
            'control-character',
            () =>
              `${describePath(path)} contains the control character U+${ch}; ` +
              'line breaks and control characters are not allowed in values',
          );
        }
        return detached(value);
      } else if (value !== null && typeof value === 'object') {
        // Under %YAML 1.1, !!binary and !!timestamp still make Buffers and Dates.
        const made = value instanceof Date ? 'a date' : 'binary data';
        report(
          node,
          'yaml-tag',
          () => `${describePath(path)} is ${made} made by a YAML tag; tags are not supported, write a plain value`,
        );
      }
      return value;
    }
    if (isAlias(node)) {
      report(node, 'yaml-alias', () => `YAML aliases (*${clip(node.source, 40)}) are not allowed; write the value out`);
      return null;
    }
    if (path.length >= MAX_DEPTH) {
      report(node, 'too-deep', () => `nesting deeper than ${MAX_DEPTH} levels is not allowed`);
      return null;
    }
    if (isMap(node)) {
      const out: Record<string, unknown> = {};
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        // With stringKeys every key is a string scalar (anything else is a parse error reported before).
        const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
        if (FORBIDDEN_KEYS.has(key)) {
          report(keyNode, 'forbidden-key', () => `the key "${key}" is not allowed`);
          continue;
        }
        if (CONTROL_CHARACTER.test(key)) {
          report(keyNode, 'control-character', () => 'a key contains a control character');
          continue;
        }
        if (Object.prototype.hasOwnProperty.call(out, key)) {
          report(
            keyNode,
            'duplicate-key',
            () => `duplicate key "${clip(key, 40)}": each key may appear once in a mapping`,
          );
          continue;
        }
        path.push(key);
        out[key] = convert(pair.value);
        path.pop();
      }
      return out;
    }
    if (isSeq(node)) {
      const out: unknown[] = [];
      node.items.forEach((item, i) => {
        path.push(i);
        out.push(convert(item));
        path.pop();
      });
      return out;
    }
    report(node, 'yaml-syntax', () => 'unsupported YAML node');
    return null;
  };
  const value = convert(doc.contents);
  if (problems > MAX_SYNTAX_DIAGNOSTICS) {
    const last = diagnostics.at(-1)!;
    diagnostics.push({
      ...last,
      message: `${problems - MAX_SYNTAX_DIAGNOSTICS} more problems in this document are not shown`,
    });
  }
  return problems === 0 ? (value as Record<string, unknown>) : null;
}

export function describePath(path: readonly PathSegment[]): string {
  if (path.length === 0) return 'the document';
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? clip(s, 40) : `.${clip(s, 40)}`)).join('');
}

/**
 * Parses one file into documents. Never throws: every problem (encoding, YAML syntax, aliases,
 * duplicate keys, forbidden keys, depth, non-mapping documents) becomes a positioned diagnostic.
 */
export function parseFile(file: SourceFile): ParsedFile {
  const name = file.displayPath;
  const documents: ParsedDocument[] = [];
  if (file.bytes.length > MAX_FILE_BYTES) {
    return {
      documents,
      diagnostics: [
        diagnostic(
          name,
          { line: 1, column: 1 },
          'file-too-large',
          `${name} is ${file.bytes.length} bytes; configuration files may be at most 1 MiB`,
        ),
      ],
    };
  }
  const decoded = decode(file);
  if ('error' in decoded) return { documents, diagnostics: [decoded.error] };
  const { text } = decoded;
  const diagnostics: Diagnostic[] = [];
  const emptyFile = () => diagnostic(name, null, 'empty-file', `${name} holds no resources`, { severity: 'warning' });
  if (text.trim() === '') return { documents, diagnostics: [emptyFile()] };
  // A CR that does not start a CRLF is a line break to YAML but not to the parser: refuse it instead of misreading the
  // file.
  const loneCr = text.indexOf('\r') >= 0 ? /\r(?!\n)/.exec(text) : null;
  if (loneCr) {
    const { line, column } = lineColumnOf(text, loneCr.index);
    return {
      documents,
      diagnostics: [
        diagnostic(
          name,
          { line, column },
          'line-ending',
          'a carriage return (CR) that is not part of CRLF; save the file with LF (or CRLF) line endings',
        ),
      ],
    };
  }
  const lineCounter = new LineCounter();
  let docs: Document.Parsed[];
  try {
    const parsed = parseAllDocuments(text, {
      lineCounter,
      prettyErrors: false,
      // Duplicate keys are found by toCheckedValue in linear time; the parser's check is quadratic (a 400 kB
      // mapping took 40 s).
      uniqueKeys: false,
      strict: true,
      merge: false,
      stringKeys: true,
      // !!binary, !!set, !!omap, !!timestamp stay unresolved (reported below) instead of becoming Buffers, Sets, Dates.
      resolveKnownTags: false,
    });
    docs = Array.isArray(parsed) ? parsed : [];
  } catch (err) {
    return {
      documents,
      diagnostics: [
        diagnostic(name, { line: 1, column: 1 }, 'yaml-syntax', `YAML could not be parsed: ${(err as Error).message}`),
      ],
    };
  }
  let syntaxReported = 0;
  const seenSyntax = new Set<string>();
  docs.forEach((doc, index) => {
    const problems = [...doc.errors, ...doc.warnings.filter((w) => w.code === 'TAG_RESOLVE_FAILED')];
    if (problems.length) {
      for (const e of problems) {
        const d = diagnostic(name, positionAt(lineCounter, e.pos[0]), yamlCode(e.code), yamlMessage(e.code, e.message));
        const key = `${d.line}:${d.column}:${d.code}:${d.message}`;
        if (seenSyntax.has(key)) continue; // a broken construct can repeat one complaint thousands of times
        seenSyntax.add(key);
        if (syntaxReported++ < MAX_SYNTAX_DIAGNOSTICS) diagnostics.push(d);
      }
      return;
    }
    for (const w of doc.warnings) {
      const at = positionAt(lineCounter, w.pos[0]);
      diagnostics.push(diagnostic(name, at, 'yaml-warning', yamlMessage(w.code, w.message), { severity: 'warning' }));
    }
    const contents = doc.contents;
    // An empty document: a file that starts or ends with `---`, or holds only comments.
    if (contents === null || (isScalar(contents) && contents.value === null && contents.range[0] === contents.range[1]))
      return;
    if (!isMap(contents)) {
      const pos = positionAt(lineCounter, contents.range?.[0] ?? 0);
      const found = isSeq(contents) ? 'a list' : 'a single value';
      return void diagnostics.push(
        diagnostic(
          name,
          pos,
          'not-a-mapping',
          `a document must be a mapping with \`kind\` and its fields, not ${found}`,
        ),
      );
    }
    const value = toCheckedValue(doc, lineCounter, name, diagnostics);
    if (value) documents.push({ file: name, index, doc, lineCounter, value });
  });
  if (syntaxReported > MAX_SYNTAX_DIAGNOSTICS) {
    const last = diagnostics.at(-1)!;
    diagnostics.push({
      ...last,
      code: 'yaml-syntax',
      message: `${syntaxReported - MAX_SYNTAX_DIAGNOSTICS} more YAML errors in this file are not shown`,
    });
  }
  if (documents.length === 0 && diagnostics.length === 0) diagnostics.push(emptyFile());
  return { documents, diagnostics };
}

/** 1-based line and column (in UTF-16 code units) of an offset, without a LineCounter. */
function lineColumnOf(text: string, offset: number): Position {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

function yamlCode(code: string): string {
  switch (code) {
    case 'DUPLICATE_KEY':
      return 'duplicate-key';
    case 'RESOURCE_EXHAUSTION':
      return 'too-deep';
    case 'TAG_RESOLVE_FAILED':
      return 'yaml-tag';
    default:
      return 'yaml-syntax';
  }
}

function yamlMessage(code: string, message: string): string {
  switch (code) {
    case 'DUPLICATE_KEY':
      return 'duplicate key: each key may appear once in a mapping';
    case 'TAB_AS_INDENT':
      return 'tabs are not allowed for indentation in YAML; indent with spaces';
    case 'RESOURCE_EXHAUSTION':
      return `nesting is too deep to read (at most ${MAX_DEPTH} levels are allowed)`;
    case 'TAG_RESOLVE_FAILED':
      return `${message
        .replace(/^Unresolved tag: /, 'unknown tag ')
        .replace('tag:yaml.org,2002:', '!!')
        .replace(/\s+/g, ' ')
        .trim()}; YAML tags are not supported, write a plain value`;
    default:
      return message.replace(/\s+/g, ' ').trim();
  }
}
