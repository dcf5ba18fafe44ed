/**
 * The deployment examples are exercised, not just written: every manifest parses, every `mailctl` command line in
 * them names a real command with real flags, the Kubernetes pieces agree with each other, the probe paths are served
 * by a real daemon, and the daemon runs as the pod's non-root user on a volume prepared like an fsGroup volume.
 */
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseListen } from '../../src/cli/commands/run.js';
import { BIN, cli, createWorkspace, eventually, startDaemon } from '../harness/mailctl.js';
import {
  dockerfileStages,
  exampleFile,
  kubernetesDocs,
  mailctlIn,
  problemsOf,
  systemdUnit,
  workflowCommands,
  shellWords,
  type MailctlLine,
} from './commands.js';

const [statefulSet] = await kubernetesDocs('statefulset.yaml');
const [service] = await kubernetesDocs('service.yaml');
const [configMap] = await kubernetesDocs('configmap-servers.yaml');
const [secret] = await kubernetesDocs('secret.yaml');
const pod = statefulSet.spec.template.spec;
const container = pod.containers.find((c: { name: string }) => c.name === 'mailctl');
// the container runs the image's entry point (the Dockerfile's ENTRYPOINT) unless it names a command of its own
const entrypoint = (await dockerfileStages()).at(-1)!.instructions.find((i) => i.keyword === 'ENTRYPOINT')!.exec!;
const k8sRun = mailctlIn([...(container.command ?? entrypoint), ...container.args], 'statefulset.yaml')[0]!;
const group = {
  statefulSet: (await kubernetesDocs('replicas/statefulset.yaml'))[0],
  pdb: (await kubernetesDocs('replicas/pdb.yaml'))[0],
  secrets: await kubernetesDocs('replicas/store-secret.yaml'),
  cluster: (await kubernetesDocs('replicas/postgres-cluster.yaml'))[0],
};
const groupContainer = group.statefulSet.spec.template.spec.containers.find(
  (c: { name: string }) => c.name === 'mailctl',
);
const groupRun = mailctlIn([...entrypoint, ...groupContainer.args], 'replicas/statefulset.yaml')[0]!;
const unit = await systemdUnit();
const systemdRun = mailctlIn(shellWords(unit.get('[Service] ExecStart')![0]!), 'mailctl.service')[0]!;

const flagValue = (line: MailctlLine, flag: string) => line.args[line.args.indexOf(flag) + 1];
const flagValues = (line: MailctlLine, flag: string) =>
  line.args.flatMap((arg, i) => (arg === flag ? [line.args[i + 1]!] : []));
/** The Service's host as the Service manifest's own comment tells clients to write it. */
const serviceHost = /http:\/\/([^:/\s]+):\d+/.exec(
  await readFile(exampleFile('deploy/kubernetes/service.yaml'), 'utf8'),
)![1]!;

/** The status of `GET /` from the daemon on `port` when the request names `host`. */
const statusFor = (port: string, host: string) =>
  new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });

test('every manifest parses, with the kinds expected', () => {
  assert.equal(
    [statefulSet.kind, service.kind, configMap.kind, secret.kind],
    ['StatefulSet', 'Service', 'ConfigMap', 'Secret'],
  );
  for (const doc of [statefulSet, service, configMap, secret])
    assert.ok(doc.apiVersion && doc.metadata?.name, `${doc.kind} lacks apiVersion or name`);
});

test('every mailctl command line (workflow, systemd, Kubernetes) uses a real command and real flags', async () => {
  const { lines } = await workflowCommands();
  const all = [...lines, systemdRun, k8sRun];
  assert.equal([...new Set(lines.map((l) => l.subcommand))].sort(), ['apply', 'plan', 'state', 'status', 'validate']);
  assert.is(systemdRun?.subcommand, 'run');
  assert.is(k8sRun?.subcommand, 'run');
  const problems = (await Promise.all(all.map(problemsOf))).flat();
  assert.equal(problems, []);
});

test('the checker itself catches an unknown command, an unknown flag and a missing value', async () => {
  const problems = await Promise.all([
    problemsOf({ source: 't', subcommand: 'deploy', args: [] }),
    problemsOf({ source: 't', subcommand: 'plan', args: ['--dir', 'servers.d', '--detailed-exit-code'] }),
    problemsOf({ source: 't', subcommand: 'run', args: ['--listen'] }),
  ]);
  assert.match(problems[0][0]!, /no command "deploy"/);
  assert.match(problems[1].join('\n'), /plan has no --detailed-exit-code/);
  assert.match(problems[2].join('\n'), /--listen/);
});

test('systemd: Type=exec, restart on failure, HUP reload, its own state folder, credentials as the secrets folder', () => {
  const one = (key: string) => unit.get(`[Service] ${key}`)?.[0];
  assert.is(one('Type'), 'exec');
  assert.is(one('Restart'), 'on-failure');
  assert.is(one('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.is(one('StateDirectory'), 'mailctl');
  assert.is(flagValue(systemdRun, '--state-dir'), '/var/lib/mailctl');
  assert.is(flagValue(systemdRun, '--secrets-dir'), '${CREDENTIALS_DIRECTORY}');
  assert.ok((unit.get('[Service] LoadCredential') ?? []).length > 0);
  assert.is(one('NoNewPrivileges'), 'yes');
  assert.is(one('ProtectSystem'), 'strict');
  assert.not.ok(one('MemoryDenyWriteExecute') === 'yes', "Node's JIT cannot run with MemoryDenyWriteExecute=yes");
  assert.is(unit.get('[Install] WantedBy')?.[0], 'multi-user.target');
});

test('Kubernetes, a group: three replicas on PostgreSQL, a disruption budget, the replica id from the pod name', async () => {
  assert.equal(await problemsOf(groupRun), []);
  assert.is(group.statefulSet.spec.replicas, 3);
  assert.is(group.pdb.kind, 'PodDisruptionBudget');
  assert.equal(group.pdb.spec.selector.matchLabels, group.statefulSet.spec.selector.matchLabels);
  assert.is(group.pdb.spec.maxUnavailable, 1);
  assert.match(flagValue(groupRun, '--store')!, /^postgres:\/\/mailctl@/);
  assert.is(flagValue(groupRun, '--replica-id'), '$(POD_NAME)');
  const env = Object.fromEntries(
    groupContainer.env.map((e: { name: string; valueFrom?: unknown }) => [e.name, e.valueFrom]),
  );
  assert.equal(env.POD_NAME, { fieldRef: { fieldPath: 'metadata.name' } });
  assert.ok(env.PGPASSWORD, 'the database password from a Secret, not the URL');
  assert.is(groupContainer.readinessProbe.httpGet.path, '/readyz');
  const mounts = Object.fromEntries(
    groupContainer.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]),
  );
  assert.ok(flagValue(groupRun, '--token-file')!.startsWith(`${mounts.group}/`));
  assert.ok(flagValue(groupRun, '--credentials-key-file')!.startsWith(`${mounts.group}/`));
  const groupSecret = group.secrets.find((d: { metadata: { name: string } }) => d.metadata.name === 'mailctl-group');
  for (const file of [flagValue(groupRun, '--token-file')!, flagValue(groupRun, '--credentials-key-file')!])
    assert.ok(Object.keys(groupSecret.stringData).includes(path.basename(file)), file);
  assert.is(group.cluster.kind, 'Cluster');
  assert.is(group.cluster.spec.bootstrap.initdb.secret.name, 'mailctl-store');
  assert.is(
    group.cluster.spec.bootstrap.initdb.database,
    new URL(flagValue(groupRun, '--store')!.replace('$(MAILCTL_DB_HOST)', 'h')).pathname.slice(1),
  );
});

test('Kubernetes: one replica, non-root, and the flags agree with the mounts, ports, Service and Secret', () => {
  assert.is(statefulSet.spec.replicas, 1);
  assert.is(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0);
  assert.is(container.securityContext.allowPrivilegeEscalation, false);
  const mount = (volume: string) => container.volumeMounts.find((m: { name: string }) => m.name === volume)?.mountPath;
  assert.is(flagValue(k8sRun, '--dir'), mount('servers'));
  assert.is(flagValue(k8sRun, '--secrets-dir'), mount('secrets'));
  assert.is(flagValue(k8sRun, '--secrets-dir'), '/run/secrets');
  const stateDir = flagValue(k8sRun, '--state-dir')!;
  assert.ok(
    stateDir.startsWith(`${mount('state')}/`),
    'the state folder is a subfolder of the volume, created by the daemon',
  );
  assert.equal(
    statefulSet.spec.volumeClaimTemplates.map((c: { metadata: { name: string } }) => c.metadata.name),
    ['state'],
  );

  assert.ok(k8sRun.args.includes('--allow-remote'));
  assert.ok(serviceHost.startsWith(`${service.metadata.name}.`), serviceHost);
  assert.ok(flagValues(k8sRun, '--public-host').includes(serviceHost), 'the Service name is a --public-host');
  const listen = parseListen(flagValue(k8sRun, '--listen')!, true);
  assert.is(listen.host, '0.0.0.0');
  const port = container.ports.find((p: { name: string }) => p.name === 'http');
  assert.is(port.containerPort, listen.port);
  for (const probe of [container.livenessProbe, container.readinessProbe]) assert.is(probe.httpGet.port, 'http');
  assert.is(service.spec.ports[0].targetPort, 'http');
  assert.equal(service.spec.selector, statefulSet.spec.selector.matchLabels);
  assert.equal(statefulSet.spec.template.metadata.labels, statefulSet.spec.selector.matchLabels);

  const volumes = Object.fromEntries(pod.volumes.map((v: { name: string }) => [v.name, v]));
  assert.is(volumes.servers.configMap.name, configMap.metadata.name);
  assert.is(volumes.secrets.secret.secretName, secret.metadata.name);
  const keys = Object.keys(secret.stringData);
  for (const item of volumes.secrets.secret.items) assert.ok(keys.includes(item.key), `secret key ${item.key}`);
  for (const env of container.env) {
    assert.match(env.name, /^MAILCTL_SECRET_/, 'only the default --secret-env-prefix is readable');
    assert.ok(keys.includes(env.valueFrom.secretKeyRef.key), `secret key ${env.valueFrom.secretKeyRef.key}`);
  }
});

test('the ConfigMap holds a servers.d that validates with no findings', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-cm-'));
  try {
    for (const [name, text] of Object.entries<string>(configMap.data)) await writeFile(path.join(dir, name), text);
    const r = await cli(['validate', '--dir', dir, '--strict'], { ...process.env, NO_COLOR: '1' });
    assert.is(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /0 errors, 0 warnings/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('every probe path is served by a real daemon without the token: 200; its Service name is answered', async () => {
  const probes = [container.livenessProbe, container.readinessProbe].map((p) => p.httpGet.path);
  assert.equal(probes, ['/livez', '/readyz']);
  const ws = await createWorkspace();
  const daemon = await startDaemon(
    ws,
    flagValues(k8sRun, '--public-host').flatMap((h) => ['--public-host', h]),
  );
  try {
    for (const probe of probes) {
      await eventually(async () => (await fetch(`${daemon.url}${probe}`)).status === 200, 20_000, `${probe} → 200`);
    }
    assert.is((await fetch(`${daemon.url}/v1/status`)).status, 401, 'the API itself still needs the token');
    const { port } = new URL(daemon.url);
    assert.is(await statusFor(port, `${serviceHost}:${port}`), 200);
    assert.is(await statusFor(port, `attacker.example:${port}`), 421);
  } finally {
    await daemon.stop();
    await ws.cleanup();
  }
});

test('as the pod runs it: a non-root user on a group-writable volume it does not own creates its own 0700 state folder', async () => {
  if (process.getuid?.() !== 0) {
    console.log('  (skipped: needs root to run the daemon as another user)');
    return;
  }
  const uid = pod.securityContext.runAsUser as number;
  const gid = pod.securityContext.fsGroup as number;
  const root = await mkdtemp(path.join(tmpdir(), 'mailctl-nonroot-'));
  await chmod(root, 0o755);
  const volume = path.join(root, 'var-lib-mailctl'); // what the kubelet prepares: root-owned, group fsGroup, 2775
  const servers = path.join(root, 'servers.d');
  const secrets = path.join(root, 'secrets');
  await Promise.all([mkdir(volume), mkdir(servers), mkdir(secrets)]);
  await chown(volume, 0, gid);
  await chmod(volume, 0o2775);
  const stateDir = path.join(volume, 'state');
  const child = spawn(
    process.execPath,
    [BIN, 'run', '--dir', servers, '--state-dir', stateDir, '--secrets-dir', secrets, '--listen', '127.0.0.1:0'],
    {
      uid,
      gid,
      env: { PATH: process.env.PATH, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let text = '';
  child.stdout.on('data', (d) => (text += d));
  child.stderr.on('data', (d) => (text += d));
  try {
    const url = await eventually(
      () => /listening on (http:\/\/\S+)/.exec(text)?.[1],
      20_000,
      `the daemon listening:\n${text}`,
    );
    await eventually(async () => (await fetch(`${url}/readyz`)).status === 200, 20_000, '/readyz → 200');
    const info = await stat(stateDir);
    assert.is(info.uid, uid);
    assert.is(info.mode & 0o777, 0o700);
    assert.is((await stat(path.join(stateDir, 'api-token'))).uid, uid);
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    await rm(root, { recursive: true, force: true });
  }
});

test.run();
