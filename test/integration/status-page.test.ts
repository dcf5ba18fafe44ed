/**
 * The status page at `/`, opened in headless Chromium (Debian `chromium`, driven by playwright-core) against a real
 * daemon with one healthy and one failing IMAP server: what a person sees, on a desktop and on a phone.
 */
import { rm } from 'node:fs/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureChromium } from '../harness/chromium.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml } from '../harness/fixtures.js';
import {
  cli,
  createWorkspace,
  eventually,
  startDaemon,
  type DaemonProcess,
  type Workspace,
} from '../harness/mailctl.js';

const CANARY = 'CANARY-page-secret-5e81aa';
const USER = 'support@example.com';
const OTHER = 'sales@example.com';

let healthy: Dovecot;
let doomed: Dovecot;
let ws: Workspace;
let daemon: DaemonProcess;
let browser: Browser;
const requested: string[] = [];

test.before(async () => {
  // Debian's `chromium` (installed by the harness as root) or MAILCTL_CHROMIUM
  const executablePath = await ensureChromium().catch((err: Error) => {
    // uvu does not print an error thrown by a hook (it only counts the tests as not passed): say it here
    console.error(`✘ status-page: ${err.message}`);
    throw err;
  });
  [healthy, doomed] = await Promise.all([
    startDovecot({ users: { [USER]: CANARY } }),
    startDovecot({ users: { [OTHER]: CANARY }, keepDir: true }),
  ]); // keepDir: its CA stays readable after stop()
  await healthy.createFolder(USER, 'ContactStorage');
  await doomed.createFolder(OTHER, 'ContactStorage');
  ws = await createWorkspace();
  const ref = `\${file:${await ws.writeSecret('password', CANARY)}}`;
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      name: 'Support inbox',
      user: USER,
      port: healthy.ports.imap,
      caFile: healthy.caFile,
      password: ref,
    }),
  );
  await ws.writeServer(
    'imap-sales.yaml',
    imapYaml({
      shortName: 'sales',
      name: 'Sales inbox',
      user: OTHER,
      port: doomed.ports.imap,
      caFile: doomed.caFile,
      password: ref,
    }),
  );
  daemon = await startDaemon(ws, ['--no-watch']);
  const r = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  browser = await chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

test.after(async () => {
  await browser?.close().catch(() => undefined);
  await daemon?.kill().catch(() => undefined);
  await Promise.all([healthy?.stop(), doomed?.stop()]);
  if (doomed) await rm(doomed.dir, { recursive: true, force: true });
  await ws?.cleanup();
});

async function open(viewport: { width: number; height: number }): Promise<Page> {
  const page = await browser.newPage({ viewport });
  page.on('request', (req) => requested.push(req.url()));
  const res = await page.goto(`${daemon.url}/`);
  assert.is(res?.status(), 200, 'the page needs no token');
  return page;
}
const card = (page: Page, id: string) => page.locator(`section.server[data-server="${id}"]`);

test('both servers show as running, with last success and counters', async () => {
  const page = await open({ width: 1280, height: 800 });
  await eventually(
    async () =>
      (await card(page, 'imap/sales').innerText()).includes('running') &&
      (await card(page, 'imap/support').innerText()).includes('running'),
    20_000,
    'both cards running',
  );
  const support = await card(page, 'imap/support').innerText();
  assert.match(support, /Support inbox/);
  assert.match(support, /Last success\s+\d+ s ago/);
  assert.match(support, /Last error\s+none/);
  assert.match(support, /polls_ok \d+/);
  assert.match(await page.locator('#summary').innerText(), /^2 servers, all healthy$/);
  await page.close();
});

test('a failing server is marked and shows its error without reloading the page', async () => {
  const page = await open({ width: 1280, height: 800 });
  await eventually(
    async () => (await card(page, 'imap/sales').innerText()).includes('running'),
    20_000,
    'sales running first',
  );
  // a mark in this document: a reload (meta refresh, location.reload) would make a new one without it
  await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
  await doomed.stop();
  await eventually(
    async () => /failing/.test(await card(page, 'imap/sales').innerText()),
    30_000,
    'the page marks sales as failing',
  );
  const sales = await card(page, 'imap/sales').innerText();
  assert.match(sales, /Sales inbox/);
  assert.match(sales, /\b(backoff|failed)\b/);
  assert.match(sales, /Last error\s+network: .+/, sales);
  assert.is(await card(page, 'imap/sales').evaluate((e) => e.classList.contains('failing')), true);
  const border = await card(page, 'imap/sales').evaluate((e) => getComputedStyle(e).borderLeftColor);
  assert.is(border, 'rgb(207, 34, 46)', 'a red marker');
  assert.not.match(await card(page, 'imap/support').innerText(), /failing/);
  assert.match(await page.locator('#summary').innerText(), /^2 servers, 1 failing$/);
  assert.match(await page.title(), /1 failing/);
  assert.is(
    await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded),
    true,
    'updated in place, not reloaded',
  );
  await page.close();
});

test('on a phone the cards stack and nothing scrolls sideways', async () => {
  const page = await open({ width: 375, height: 667 });
  await eventually(async () => (await page.locator('section.server').count()) === 2, 10_000, 'two cards');
  const layout = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
    cards: [...document.querySelectorAll('section.server')]
      .map((e) => e.getBoundingClientRect())
      .map((r) => ({ left: r.left, right: r.right, top: r.top })),
  }));
  assert.ok(layout.scrollWidth <= layout.width, `page is ${layout.scrollWidth}px wide in a ${layout.width}px viewport`);
  const [a, b] = layout.cards;
  assert.ok(a && b && a.left === b.left && a.top !== b.top, `cards stacked: ${JSON.stringify(layout.cards)}`);
  for (const c of layout.cards) assert.ok(c.left >= 0 && c.right <= layout.width, 'cards fit the screen');
  assert.match(await card(page, 'imap/sales').innerText(), /Last error\s+network: /);
  await page.close();
});

test('the page loads nothing from elsewhere and shows no secrets', async () => {
  assert.ok(requested.length > 0);
  for (const url of requested) assert.ok(url.startsWith(daemon.url), `external request: ${url}`);
  const json = await (await fetch(`${daemon.url}/status.json`)).text();
  assert.not.ok(json.includes(CANARY));
  assert.not.ok(json.includes(ws.root), 'no config folder in the public JSON');
  const html = await (await fetch(`${daemon.url}/`)).text();
  assert.not.match(html, /\b(src|href)="https?:/);
  assert.not.ok(daemon.output().includes(CANARY));
});

test.run();
