/**
 * A daemon whose servers log in with OAuth2 against the real provider of oauth2-stack.ts: the stack, a workspace,
 * the YAML of an oauth2 auth block, every command's output kept, and the canary check that no token, client secret
 * or key shows in any output, log line or file of the state folder.
 *
 *   const o = await startOAuth2Daemon({ accessTokenTtl: 300 });
 *   await o.ws.writeServer('imap.yaml', imapYaml({ ..., auth: o.auth(USER, { clientSecret: o.clientSecretRef }) }));
 *   await o.startDaemon();
 *   const r = await o.run(['apply', '--dir', o.ws.dir]);
 *   await o.canary();
 *   await o.stop();
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { cli, createWorkspace, startDaemon, type CliResult, type DaemonProcess, type Workspace } from './mailctl.js';
import { startOAuth2Stack, type OAuth2Stack, type OAuth2StackOptions } from './oauth2-stack.js';
import { startPostgres, type Postgres } from './postgres.js';

export interface OAuth2DaemonOptions extends OAuth2StackOptions {
  /** Where the daemons keep their state: the state folder (default) or a private PostgreSQL. */
  store?: 'file' | 'postgres';
}

/** A credential the daemon kept, as its store holds it (sealed). */
export interface KeptRecord {
  id: string;
  source: string;
  nonce: string;
  boundTo: Record<string, string>;
}

export interface OAuth2Daemon extends OAuth2Stack {
  ws: Workspace;
  /** The daemon started last. */
  daemon: DaemonProcess;
  /** `${file:}` of the confidential client's secret. */
  clientSecretRef: string;
  /** The lines of an oauth2 `auth:` block for `user` with the provider's endpoints, and `fields` added. */
  auth(user: string, fields?: Record<string, string>): string[];
  /** A mailctl command on the workspace; its output joins the canary check. */
  run(args: string[]): Promise<CliResult>;
  /** Outputs of commands run otherwise (a running `auth login`), for the canary check. */
  outputs: string[];
  startDaemon(args?: string[]): Promise<DaemonProcess>;
  /** The credentials the daemons kept, from the store (files of the state folder, or rows), by id. */
  kept(): Promise<KeptRecord[]>;
  /**
   * Asserts that no token the provider issued, no client secret or key and no `extra` value shows in any output, log
   * line, file of the state folder or (PostgreSQL) row.
   */
  canary(extra?: string[]): Promise<void>;
  stop(): Promise<void>;
}

async function filesBelow(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const out: string[] = [];
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesBelow(full)));
    else if (e.isFile()) out.push(full);
  }
  return out;
}

export async function startOAuth2Daemon(opts: OAuth2DaemonOptions = {}): Promise<OAuth2Daemon> {
  const stack = await startOAuth2Stack({ deviceInterval: 1, ...opts });
  const ws = await createWorkspace();
  const pg: Postgres | null = opts.store === 'postgres' ? await startPostgres() : null;
  // a PostgreSQL store keeps no token or key of its own: the daemons are given both
  const keyFile = path.join(ws.root, 'credentials-key-given');
  const tokenFile = path.join(ws.root, 'api-token-given');
  if (pg) {
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    await writeFile(tokenFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  }
  const storeArgs = pg ? ['--store', pg.url, '--token-file', tokenFile, '--credentials-key-file', keyFile] : [];
  const clientSecretRef = `\${file:${await ws.writeSecret('client-secret', stack.op.clients.confidential.clientSecret)}}`;
  const outputs: string[] = [];
  const daemons: DaemonProcess[] = [];
  const o: OAuth2Daemon = {
    ...stack,
    ws,
    clientSecretRef,
    outputs,
    get daemon(): DaemonProcess {
      return daemons.at(-1)!;
    },
    auth: (user, fields = {}) => [
      '  type: oauth2',
      `  user: ${user}`,
      '  oauth2:',
      ...Object.entries({
        tokenUrl: stack.op.tokenUrl,
        deviceAuthorizationUrl: stack.op.deviceAuthorizationUrl,
        authorizationUrl: stack.op.authorizationUrl,
        scope: 'mail',
        ...fields,
      }).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`),
    ],
    async run(args) {
      const r = await cli(args, ws.env);
      outputs.push(r.stdout, r.stderr);
      return r;
    },
    async startDaemon(args = ['--no-watch']) {
      const daemon = await startDaemon(ws, [...storeArgs, ...args], pg?.env ?? {});
      daemons.push(daemon);
      return daemon;
    },
    async kept() {
      if (pg) {
        const rows = await pg.admin('SELECT credential FROM mailctl.credentials ORDER BY id', pg.database);
        return rows.map((r) => r.credential as KeptRecord);
      }
      const dir = path.join(ws.stateDir, 'credentials');
      const files = (await readdir(dir).catch(() => [])).sort();
      return Promise.all(files.map(async (f) => JSON.parse(await readFile(path.join(dir, f), 'utf8')) as KeptRecord));
    },
    async canary(extra = []) {
      const { op } = stack;
      const key = await readFile(pg ? keyFile : path.join(ws.stateDir, 'credentials-key'), 'utf8');
      const secrets = [
        ...op.issuedTokens(),
        op.clients.confidential.clientSecret,
        op.clients.app.clientSecret,
        op.clients.appCert.privateKeyPem,
        ...op.clients.appCert.privateKeyPem.split('\n').filter((l) => l.length > 40),
        key.trim(),
        ...extra,
      ];
      assert.ok(op.issuedTokens().length >= 2, 'the provider issued tokens to look for');
      const texts: [string, string][] = [
        ...outputs.map((text, i): [string, string] => [`command output ${i}`, text]),
        ...daemons.map((d, i): [string, string] => [`daemon ${i} output`, d.output()]),
      ];
      // the state folder, but the file that holds the credentials key itself; every row of a PostgreSQL store
      for (const file of await filesBelow(ws.stateDir))
        if (path.basename(file) !== 'credentials-key') texts.push([file, await readFile(file, 'utf8')]);
      if (pg) texts.push(['the PostgreSQL store (pg_dump --data-only)', await pg.dumpDataOnly()]);
      const found = texts.flatMap(([where, text]) =>
        secrets.filter((s) => s.length >= 8 && text.includes(s)).map((s) => `${where} holds ${s.slice(0, 6)}…`),
      );
      assert.equal(found, [], 'no token, client secret or key in any output, log or state file');
    },
    async stop() {
      await Promise.all(daemons.map((d) => d.kill().catch(() => undefined)));
      await stack.close();
      await pg?.stop();
      if (process.env.MAILCTL_KEEP_WS !== '1') await ws.cleanup();
    },
  };
  return o;
}
