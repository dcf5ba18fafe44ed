import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { EmailFlow, EmailServer } from '../generated/mailctl.js';
import { clip, diagnostic, sortDiagnostics, type Diagnostic } from './diagnostics.js';
import { folderDigest, readConfigFolder, type SourceFile } from './files.js';
import { serverId, type LoadedFlow, type LoadedServer, type SourceInfo } from './model.js';
import { normalizeFlow, normalizeServer } from './normalize.js';
import { locate, parseFile, type ParsedDocument } from './parse.js';
import { checkRules } from './rules.js';
import { checkSchema } from './schema.js';

export interface LoadedConfig {
  /** Valid servers (a server with an error in its own document is left out; rule errors keep it). */
  servers: LoadedServer[];
  flows: LoadedFlow[];
  diagnostics: Diagnostic[];
  /** True when there is no error (warnings allowed). */
  valid: boolean;
  fileCount: number;
  /** Digest of the files' paths and bytes (see `folderDigest`). */
  folderDigest: string;
}

const KINDS = ['EmailServer', 'EmailFlow'] as const;

function sourceOf(parsed: ParsedDocument): SourceInfo {
  return {
    file: parsed.file,
    position: locate(parsed, []),
    locate: (path, atKey = false) => locate(parsed, path, atKey),
  };
}

const at = (parsed: ParsedDocument, path: string[], code: string, message: string): Diagnostic =>
  diagnostic(parsed.file, locate(parsed, path), code, message);

/** Reads kind and type first, so a wrong kind or `type: pop3` gets its own message instead of schema noise. */
function documentKind(parsed: ParsedDocument): { kind: (typeof KINDS)[number] } | { error: Diagnostic } {
  const { kind, type } = parsed.value;
  if (kind === undefined)
    return {
      error: at(parsed, [], 'missing-kind', 'the document has no "kind"; use kind: EmailServer or kind: EmailFlow'),
    };
  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    return {
      error: at(
        parsed,
        ['kind'],
        'unknown-kind',
        `unknown kind ${clip(JSON.stringify(kind) ?? typeof kind)}; use EmailServer or EmailFlow`,
      ),
    };
  }
  if (kind === 'EmailServer' && typeof type === 'string' && type.toLowerCase() === 'pop3') {
    return {
      error: at(
        parsed,
        ['type'],
        'pop3-unsupported',
        'POP3 is no longer supported; configure the mailbox over IMAP (type: imap)',
      ),
    };
  }
  return { kind: kind as (typeof KINDS)[number] };
}

/** Parses, checks and normalizes already-read files. Pure apart from CPU: usable on any set of sources. */
export function loadSources(files: readonly SourceFile[], initial: Diagnostic[] = []): LoadedConfig {
  const diagnostics = [...initial];
  const servers: LoadedServer[] = [];
  const flows: LoadedFlow[] = [];
  const flowsNamedByInvalidServers = new Set<string>();
  const invalidFlowNames = new Set<string>();
  for (const file of files) {
    const parsed = parseFile(file);
    diagnostics.push(...parsed.diagnostics);
    for (const document of parsed.documents) {
      const kind = documentKind(document);
      if ('error' in kind) {
        diagnostics.push(kind.error);
        continue;
      }
      const checked = checkSchema(document, kind.kind);
      if (!checked.ok) {
        // Left out, but no follow-up noise: its flow counts as used (server), its name as defined (flow).
        if (typeof document.value.flow === 'string' && kind.kind === 'EmailServer')
          flowsNamedByInvalidServers.add(document.value.flow);
        if (typeof document.value.name === 'string' && kind.kind === 'EmailFlow')
          invalidFlowNames.add(document.value.name);
        const id =
          kind.kind === 'EmailServer'
            ? identityHint(document.value)
            : typeof document.value.name === 'string'
              ? `flow/${document.value.name}`
              : null;
        diagnostics.push(...checked.diagnostics.map((d) => ({ ...d, resource: id })));
        continue;
      }
      const source = sourceOf(document);
      if (kind.kind === 'EmailServer') {
        const spec = normalizeServer(checked.resource as EmailServer);
        servers.push({ id: serverId(spec), spec, source });
      } else {
        const spec = normalizeFlow(checked.resource as EmailFlow);
        flows.push({ id: `flow/${spec.name}`, spec, source });
      }
    }
  }
  diagnostics.push(...checkRules(servers, flows, { flowsNamedByInvalidServers, invalidFlowNames }));
  sortDiagnostics(diagnostics);
  return {
    servers,
    flows,
    diagnostics,
    valid: !diagnostics.some((d) => d.severity === 'error'),
    fileCount: files.length,
    folderDigest: folderDigest(files),
  };
}

function identityHint(value: Record<string, unknown>): string | null {
  return typeof value.type === 'string' && typeof value.shortName === 'string'
    ? `${value.type}/${value.shortName}`
    : null;
}

/** Loads a configuration folder: every file, every document, every rule; all findings together. */
export async function loadConfig(dir: string): Promise<LoadedConfig> {
  const folder = await readConfigFolder(dir);
  return loadSources(folder.files, folder.diagnostics);
}

/**
 * Loads the daemon's `--system-smtp` file: exactly one SMTP EmailServer kept outside the folder, used for template
 * emails when no server has `role: template`.
 */
export async function loadSystemSmtp(
  file: string,
): Promise<{ server: LoadedServer | null; diagnostics: Diagnostic[] }> {
  const bytes = await readFile(file).catch(() => null);
  if (bytes === null) {
    return {
      server: null,
      diagnostics: [diagnostic(file, null, 'file-unreadable', `cannot read ${file}`)],
    };
  }
  const config = loadSources([{ displayPath: file, relativePath: path.basename(file), bytes }]);
  const errors = config.diagnostics.filter((d) => d.severity === 'error');
  const smtp = config.servers.filter((s) => s.spec.type === 'smtp');
  if (errors.length === 0 && (smtp.length !== 1 || config.servers.length !== 1 || config.flows.length > 0)) {
    errors.push(
      diagnostic(file, null, 'system-smtp-invalid', `${file} must hold exactly one EmailServer of type smtp`),
    );
  }
  return { server: errors.length ? null : smtp[0]!, diagnostics: errors };
}
