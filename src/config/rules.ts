import { diagnostic, type Diagnostic } from './diagnostics.js';
import type { ImapServerSpec, LoadedFlow, LoadedServer, SmtpServerSpec } from './model.js';
import { credentialOf, oauth2Findings } from './oauth2.js';
import { checkPollSchedule } from './schedule.js';
import { STORE_TABLES } from './sinks.js';
import { isIpLiteral } from './schema.js';
import { notNormalBecause, parseSecretRef } from './secret-ref.js';

type Path = readonly (string | number)[];
type Located = { id: string; source: LoadedServer['source'] };

const where = (r: Located) => `${r.source.file}:${r.source.position.line}:${r.source.position.column}`;
const isAddress = (s: string) => /^[^@\s]+@[^@\s]+$/.test(s);
const sameFolder = (a: string, b: string) => (a.toUpperCase() === 'INBOX' ? b.toUpperCase() === 'INBOX' : a === b);

/** Cross-file rules: each finding carries a stable code and points at the node that causes it. */
export function checkRules(
  servers: readonly LoadedServer[],
  flows: readonly LoadedFlow[],
  /** Resources left out for errors of their own (already reported), so that they cause no follow-up findings. */
  leftOut: {
    /** Flows named by left-out servers: they count as used (no unused-flow). */
    flowsNamedByInvalidServers?: ReadonlySet<string>;
    /** Names of left-out flows: a server naming one gets no flow-not-found. */
    invalidFlowNames?: ReadonlySet<string>;
  } = {},
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const emit = (
    r: Located,
    path: Path,
    code: string,
    message: string,
    severity: Diagnostic['severity'] = 'error',
    atKey = false,
  ) => {
    const position = path.length ? r.source.locate(path, atKey) : r.source.position;
    out.push(diagnostic(r.source.file, position, code, message, { severity, resource: r.id }));
  };

  // Identities and names.
  const unique = firstOfEach(
    servers,
    (s) => s.id,
    (dup, first) =>
      emit(dup, ['shortName'], 'duplicate-identity', `${dup.id} is defined twice: here and at ${where(first)}`),
  );
  firstOfEach(
    unique,
    (s) => `${s.spec.type}\u0000${s.spec.name}`,
    (dup, first) =>
      emit(
        dup,
        ['name'],
        'duplicate-name',
        `two ${dup.spec.type} servers are named "${dup.spec.name}": ${dup.id} and ${first.id} (at ${where(first)})`,
      ),
  );
  const flowByName = new Map<string, LoadedFlow>();
  firstOfEach(
    flows,
    (f) => f.spec.name,
    (dup, first) =>
      emit(
        dup,
        ['name'],
        'duplicate-flow',
        `the flow "${dup.spec.name}" is defined twice: here and at ${where(first)}`,
      ),
  ).forEach((f) => flowByName.set(f.spec.name, f));

  const imap = unique.filter((s): s is LoadedServer & { spec: ImapServerSpec } => s.spec.type === 'imap');
  const smtp = unique.filter((s): s is LoadedServer & { spec: SmtpServerSpec } => s.spec.type === 'smtp');
  const enabledImap = imap.filter((s) => s.spec.enabled);
  const enabledSmtp = smtp.filter((s) => s.spec.enabled);

  const normalForm = (r: Located, path: Path, reference: string | undefined) => {
    const ref = reference === undefined ? null : parseSecretRef(reference);
    const why = ref && notNormalBecause(ref);
    if (why)
      emit(
        r,
        path,
        'secret-ref-not-normal',
        `${reference} is not in normal form: ${why}; write the path without "." or ".." segments, "//" or a ` +
          'trailing "/" (one spelling per secret file, so its credential binding applies)',
      );
  };
  for (const server of servers) {
    const { auth } = server.spec;
    if (auth.type === 'basic') normalForm(server, ['auth', 'password'], auth.password);
    else for (const field of OAUTH2_REFERENCES) normalForm(server, ['auth', 'oauth2', field], auth.oauth2[field]);
  }
  for (const flow of flows) normalForm(flow, ['deliver', 'webhook', 'secret'], flow.spec.deliver.webhook?.secret);

  for (const server of unique) {
    const { spec } = server;
    if (spec.allowPlaintext) {
      emit(
        server,
        ['allowPlaintext'],
        'plaintext',
        spec.tls
          ? 'allowPlaintext has no effect with tls: true (the connection uses implicit TLS)'
          : `${server.id} may connect without TLS: the password and all mail cross the network in clear text`,
        'warning',
      );
    }
    if (spec.auth.type === 'oauth2') {
      const { oauth2 } = spec.auth;
      for (const finding of oauth2Findings(oauth2))
        emit(server, ['auth', 'oauth2', ...finding.path], finding.code, finding.message);
      for (const field of ['tokenUrl', 'deviceAuthorizationUrl'] as const)
        if (oauth2[field]?.startsWith('http://'))
          emit(
            server,
            ['auth', 'oauth2', field],
            'insecure-token-url',
            `${field} uses http://: the client secret and tokens would cross the network unencrypted`,
            'warning',
          );
    }
  }
  checkSharedCredentials(unique, emit);

  // IMAP servers.
  const usedFlows = new Set<string>(leftOut.flowsNamedByInvalidServers);
  for (const server of imap) {
    const { spec } = server;
    if (sameFolder(spec.folder, spec.storageFolder)) {
      emit(
        server,
        ['storageFolder'],
        'storage-folder-equals-folder',
        `storageFolder must differ from folder (both "${spec.folder}")`,
      );
    }
    const schedule = checkPollSchedule(spec.pollSchedule);
    if (schedule) emit(server, ['pollSchedule'], schedule.code, schedule.message);
    if (spec.flow !== undefined) {
      usedFlows.add(spec.flow);
      if (!flowByName.has(spec.flow) && !leftOut.invalidFlowNames?.has(spec.flow)) {
        const known = [...flowByName.keys()];
        const flowList = known.length ? ` (flows: ${known.join(', ')})` : ' (no EmailFlow is defined)';
        emit(server, ['flow'], 'flow-not-found', `flow "${spec.flow}" does not exist${flowList}`);
      }
    } else if (spec.enabled) {
      emit(
        server,
        [],
        'flow-required',
        `${server.id} is enabled but names no flow; add "flow: <name of an EmailFlow>" (or set enabled: false)`,
      );
    }
    if (isIpLiteral(spec.host) && !spec.sniServerName && (spec.tls || !spec.allowPlaintext)) {
      emit(
        server,
        ['host'],
        'sni-missing',
        `host is an IP address and TLS is on: set sniServerName to the name on the server's certificate`,
        'warning',
      );
    }
  }
  // INBOX is case-insensitive in IMAP (RFC 3501); other folder names are not.
  const folderKey = (folder: string) => (folder.toUpperCase() === 'INBOX' ? 'INBOX' : folder);
  firstOfEach(
    enabledImap,
    (s) => `${s.spec.host.toLowerCase()}\u0000${s.spec.auth.user.toLowerCase()}\u0000${folderKey(s.spec.folder)}`,
    (dup, first) =>
      emit(
        dup,
        ['folder'],
        'duplicate-mailbox-poller',
        `${dup.id} and ${first.id} both poll ${dup.spec.auth.user} folder "${dup.spec.folder}" on ` +
          `${dup.spec.host}; every message would be processed twice`,
      ),
  );
  const smtpUsers = new Set(enabledSmtp.map((s) => s.spec.auth.user.toLowerCase()));
  for (const server of enabledImap) {
    if (!smtpUsers.has(server.spec.auth.user.toLowerCase())) {
      emit(
        server,
        ['auth', 'user'],
        'no-reply-server',
        `no enabled smtp server uses ${server.spec.auth.user}: replies to this mailbox would not come from ` +
          'the address the mail was sent to',
        'warning',
      );
    }
  }

  // SMTP servers.
  firstOfEach(
    enabledSmtp.filter((s) => s.spec.role === 'template'),
    () => 'template',
    (dup, first) =>
      emit(
        dup,
        ['role'],
        'multiple-template-servers',
        `only one enabled server may have role: template; ${first.id} (at ${where(first)}) already has it`,
      ),
  );
  const claimed = new Map<string, LoadedServer>();
  for (const server of enabledSmtp) {
    const { spec } = server;
    const addresses: { address: string; path: Path }[] = [];
    if (isAddress(spec.auth.user)) addresses.push({ address: spec.auth.user, path: ['auth', 'user'] });
    spec.additionalFromAddresses.forEach((address, i) =>
      addresses.push({ address, path: ['additionalFromAddresses', i] }),
    );
    if (addresses.length === 0) {
      emit(
        server,
        ['auth', 'user'],
        'smtp-no-from-address',
        `${server.id}: auth.user "${spec.auth.user}" is not an email address and there are no ` +
          'additionalFromAddresses, so it has no From address to send with',
      );
    }
    for (const { address, path } of addresses) {
      const owner = claimed.get(address.toLowerCase());
      if (owner && owner !== server) {
        emit(
          server,
          path,
          'from-address-conflict',
          `the From address ${address} is also claimed by ${owner.id} (at ${where(owner)}); each address may ` +
            'belong to one enabled smtp server',
        );
      } else claimed.set(address.toLowerCase(), server);
    }
  }

  // Flows.
  for (const flow of flowByName.values()) {
    const { routes } = flow.spec;
    routes.forEach((route, i) => {
      const isLast = i === routes.length - 1;
      if (!route.when && !isLast)
        emit(
          flow,
          ['routes', i],
          'default-route',
          `only the last route may have no "when"; the routes after this one could never match`,
        );
      if (route.when && isLast)
        emit(
          flow,
          ['routes', i],
          'default-route',
          `the last route must have no "when": it is the default for mail no other route matches`,
        );
    });
    const sink = flow.spec.deliver.directory;
    if (sink !== undefined && sink.split(/[\\/]/).includes('..')) {
      emit(flow, ['deliver', 'directory'], 'invalid-sink', 'deliver.directory must not contain ".." segments');
    }
    const table = flow.spec.deliver.postgres?.table;
    if (table !== undefined && (STORE_TABLES as readonly string[]).includes(table))
      emit(
        flow,
        ['deliver', 'postgres', 'table'],
        'reserved-table',
        `the table "${table}" is one of the store's own tables; give the queue table another name`,
      );
    if (!usedFlows.has(flow.spec.name))
      emit(flow, ['name'], 'unused-flow', `the flow "${flow.spec.name}" is not used by any imap server`, 'warning');
  }
  return out;
}

/** The secret references an oauth2 block may hold. */
const OAUTH2_REFERENCES = ['accessToken', 'clientSecret', 'clientCertificate', 'clientKey', 'refreshToken'] as const;

/** What servers sharing a credential (one access token, one refresh at a time) must agree on. */
const SHARED_CREDENTIAL_FIELDS = [
  'scope',
  'clientSecret',
  'clientCertificate',
  'clientKey',
  'deviceAuthorizationUrl',
  'authorizationUrl',
] as const;

/** oauth2-credential-conflict: servers with one credential that would ask for its tokens differently. */
function checkSharedCredentials(
  servers: readonly LoadedServer[],
  emit: (r: Located, path: Path, code: string, message: string) => void,
): void {
  const first = new Map<string, LoadedServer>();
  for (const server of servers) {
    const credential = credentialOf(server.spec);
    if (!credential || server.spec.auth.type !== 'oauth2') continue;
    const seen = first.get(credential.id);
    if (!seen) {
      first.set(credential.id, server);
      continue;
    }
    const a = seen.spec.auth.type === 'oauth2' ? seen.spec.auth.oauth2 : {};
    const b = server.spec.auth.oauth2;
    const differ = SHARED_CREDENTIAL_FIELDS.filter((f) => (a as Record<string, unknown>)[f] !== b[f]);
    if (differ.length)
      emit(
        server,
        ['auth', 'oauth2', ...(differ[0]! in b ? [differ[0]!] : [])],
        'oauth2-credential-conflict',
        `${server.id} and ${seen.id} (at ${where(seen)}) share the credential ${credential.id} (same refresh ` +
          `token or sign-in, client id and token URL) but differ in ${differ.join(', ')}; a shared credential ` +
          'has one access token: make them equal',
      );
  }
}

/** Keeps the first item of each key; calls `onDuplicate` for every later one. Returns the kept items. */
function firstOfEach<T>(items: readonly T[], key: (item: T) => string, onDuplicate: (dup: T, first: T) => void): T[] {
  const first = new Map<string, T>();
  for (const item of items) {
    const k = key(item);
    const seen = first.get(k);
    if (seen === undefined) first.set(k, item);
    else onDuplicate(item, seen);
  }
  return [...first.values()];
}
