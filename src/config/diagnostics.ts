/** One finding about the configuration. Every renderer (text, JSON, GitHub annotations) consumes this type. */
export interface Diagnostic {
  /** Path as the user gave it (e.g. `servers.d/support.yaml`), or the server identity for runtime findings. */
  file: string;
  line: number;
  column: number;
  severity: 'error' | 'warning';
  /** Stable rule code, e.g. `storage-folder-equals-folder`. Pipelines may match on it. */
  code: string;
  message: string;
  /** `imap/support`, `flow/default`, or null when the finding is not about one resource. */
  resource: string | null;
}

export interface Position {
  line: number;
  column: number;
}

const START: Position = { line: 1, column: 1 };

/**
 * A finding: an error by default, at `at` (the start of the file when not given), about no resource unless one is
 * named. The one way every stage makes a Diagnostic.
 */
export function diagnostic(
  file: string,
  at: Position | null,
  code: string,
  message: string,
  options: { severity?: Diagnostic['severity']; resource?: string | null } = {},
): Diagnostic {
  const { line, column } = at ?? START;
  return {
    file,
    line,
    column,
    severity: options.severity ?? 'error',
    code,
    message,
    resource: options.resource ?? null,
  };
}

/** Stable order: by file, then position, then code, so output does not depend on discovery order. */
export function sortDiagnostics(diagnostics: Diagnostic[]): Diagnostic[] {
  return diagnostics.sort(
    (a, b) =>
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) ||
      a.line - b.line ||
      a.column - b.column ||
      (a.code < b.code ? -1 : a.code > b.code ? 1 : 0),
  );
}

/** Shortens user text quoted in a message (a 100 kB key must not become a 100 kB message). */
export const clip = (text: string, max = 60): string => (text.length > max ? `${text.slice(0, max - 3)}...` : text);
