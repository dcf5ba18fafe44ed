/**
 * The Dockerfile, checked without a Docker engine: its build stage packs the package the way package.test.ts does (from
 * the same .dockerignore allowlist), its runtime stage installs that tarball with the same npm flags, the entry point
 * and default flags are a valid `mailctl run` command line, the exposed port and health check are the daemon's (the
 * health check command itself is run against a real daemon), and the Kubernetes example runs this image.
 */
import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseListen } from '../../src/cli/commands/run.js';
import { createWorkspace, startDaemon } from '../harness/mailctl.js';
import { dockerfileStages, kubernetesDocs, mailctlIn, problemsOf, shellWords, type DockerStage } from './commands.js';
import { buildContext, INSTALL_FLAGS, ROOT } from './package-install.js';

const run = promisify(execFile);
const manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
const dockerfileText = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
const stages = await dockerfileStages();
const [build, runtime] = stages as [DockerStage, DockerStage];
const all = (stage: DockerStage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
const one = (stage: DockerStage, keyword: string) => {
  const found = all(stage, keyword);
  assert.is(found.length, 1, `one ${keyword} in the ${stage.name ?? 'runtime'} stage`);
  return found[0]!;
};
/** The `npm …` commands of a stage's RUN lines, as words. */
const npmCommands = (stage: DockerStage) =>
  all(stage, 'RUN')
    .flatMap((r) => r.text.split(/&&|;/))
    .map((c) => shellWords(c.trim()))
    .filter((words) => words[0] === 'npm');

const entrypoint = one(runtime, 'ENTRYPOINT').exec!;
const defaults = one(runtime, 'CMD').exec!;
const daemonLine = mailctlIn([...entrypoint, ...defaults], 'Dockerfile')[0]!;
const flag = (name: string) => defaults[defaults.indexOf(name) + 1]!;

test('two stages on Node 20 slim: a build stage and the runtime image', () => {
  assert.is(stages.length, 2);
  assert.is(build.name, 'build');
  for (const stage of stages) assert.match(stage.from, /^node:20(\.\d+)*-(bookworm-)?slim$/);
  assert.ok(Number(/^>=(\d+)/.exec(manifest.engines.node)?.[1]) <= 20, 'the image runs a Node the package accepts');
});

test('the build stage runs npm ci, then npm pack; the runtime stage installs that tarball as package.test.ts does', () => {
  const built = npmCommands(build);
  assert.equal(
    built.map((w) => w[1]),
    ['ci', 'pack'],
  );
  const packTo = built[1]![built[1]!.indexOf('--pack-destination') + 1]!;
  const copy = all(runtime, 'COPY').find((c) => c.text.startsWith('--from=build'))!;
  const [, from, to] = shellWords(copy.text);
  assert.is(path.posix.dirname(from!), packTo, 'the runtime copies the tarball the build stage packed');
  const installs = npmCommands(runtime).filter((w) => w[1] === 'install');
  assert.is(installs.length, 1);
  for (const f of INSTALL_FLAGS) assert.ok(installs[0]!.includes(f), `npm install ${f}`);
  assert.is(installs[0]!.at(-1), to, 'what is installed is the packed tarball (not a registry version)');
});

test('.dockerignore is an allowlist of what the build needs: the sources, the manifests, no local state', async () => {
  const context = await buildContext();
  for (const p of context) await access(path.join(ROOT, p));
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'scripts/gen-types.mjs'])
    assert.ok(context.includes(needed), needed);
  for (const packed of manifest.files.filter((f: string) => !f.startsWith('!') && !f.startsWith('dist')))
    assert.ok(context.includes(packed.replace(/\/$/, '')), `${packed} (in "files") is in the context`);
  for (const never of ['node_modules', 'dist', 'servers.d', '.mailctl', '.git'])
    assert.not.ok(context.includes(never), never);
});

test('the entry point is tini, then mailctl run; its default flags are real flags of the real command', async () => {
  assert.equal(entrypoint.slice(0, 2), ['/usr/bin/tini', '--']);
  assert.match(
    all(runtime, 'RUN')
      .map((r) => r.text)
      .join('\n'),
    /apt-get install -y --no-install-recommends tini/,
  );
  assert.equal(entrypoint.slice(2), ['mailctl', 'run']);
  assert.is(daemonLine.subcommand, 'run');
  assert.equal(await problemsOf(daemonLine), []);
});

test('a non-root user (the Kubernetes example runs the same uid), the state folder inside the volume', async () => {
  const [statefulSet] = await kubernetesDocs('statefulset.yaml');
  const uid = Number(one(runtime, 'USER').text.split(':')[0]);
  assert.ok(uid > 0);
  assert.is(uid, statefulSet.spec.template.spec.securityContext.runAsUser);
  assert.match(dockerfileText, new RegExp(`useradd --uid ${uid}\\b`));
  const volume = one(runtime, 'VOLUME').text;
  assert.is(path.posix.dirname(flag('--state-dir')), volume, 'the daemon creates its 0700 state folder in the volume');
  const container = statefulSet.spec.template.spec.containers[0];
  const stateMount = container.volumeMounts.find((m: { name: string }) => m.name === 'state').mountPath;
  assert.is(stateMount, volume);
});

test('EXPOSE is the port --listen names, on all addresses with --allow-remote', () => {
  const listen = parseListen(flag('--listen'), defaults.includes('--allow-remote'));
  assert.is(listen.host, '0.0.0.0');
  assert.is(one(runtime, 'EXPOSE').text, String(listen.port));
});

test("the health check asks /livez on the daemon's port; run against a real daemon it passes, and fails once it is gone", async () => {
  const check = one(runtime, 'HEALTHCHECK');
  assert.match(check.text, /^(--\S+\s+)*CMD \[/, 'exec form');
  const [node, evalFlag, script] = check.exec!;
  assert.equal([node, evalFlag], ['node', '-e']);
  const { port } = parseListen(flag('--listen'), true);
  const url = `http://127.0.0.1:${port}/livez`;
  assert.ok(script!.includes(url), `the check asks ${url}`);
  const ws = await createWorkspace();
  const daemon = await startDaemon(ws);
  const probe = () =>
    run(process.execPath, ['-e', script!.replace(url, `${daemon.url}/livez`)]).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
  try {
    assert.is(await probe(), 0);
  } finally {
    await daemon.stop();
    await ws.cleanup();
  }
  assert.is(await probe(), 1);
});

test('the Kubernetes example runs the image this Dockerfile builds, tagged with the package version', async () => {
  const [statefulSet] = await kubernetesDocs('statefulset.yaml');
  const image = statefulSet.spec.template.spec.containers[0].image as string;
  assert.is(image.split(':').at(-1), manifest.version);
  assert.ok(dockerfileText.includes(`docker build -t ${image} .`), `the Dockerfile says how to build ${image}`);
  const manifestText = await readFile(path.join(ROOT, 'examples/deploy/kubernetes/statefulset.yaml'), 'utf8');
  assert.ok(manifestText.includes(`docker push ${image}`), 'the manifest says how to build and push it');
});

test.run();
