/**
 * `npm run bench:status-page`: how long the status page takes to draw a thousand servers in headless Chromium, against
 * a baseline measured in the same browser and run — the same rows put into a bare table with one innerHTML — plus how
 * long a filter click and a search take. `-- --screenshot FILE` also saves a picture of the page (the README's).
 */
import { chromium } from 'playwright-core';
import { ensureChromium } from '../test/harness/chromium.js';
import { startDovecot } from '../test/harness/dovecot.js';
import { disabledRelays, flowYaml, imapYaml } from '../test/harness/fixtures.js';
import { cli, eventually } from '../test/harness/mailctl.js';
import { startMailStack } from '../test/harness/stack.js';
import { appendToBenchmarks, giveUpAfter, median } from './common.js';

const RELAYS = 1000;
const ROUNDS = 15;
const screenshotAt = process.argv.indexOf('--screenshot');
const screenshot = screenshotAt > 0 ? process.argv[screenshotAt + 1] : undefined;
giveUpAfter('bench:status-page', 10);

const users = { 'support@example.com': 'pw-support', 'sales@example.com': 'pw-sales' };
const stack = await startMailStack({ users });
// billing's mail server goes away after the apply: a failing server, as the page shows one
const doomed = await startDovecot({ users: { 'billing@example.com': 'pw-billing' }, keepDir: true });
const executablePath = await ensureChromium();
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const { ws, dovecot } = stack;
  await doomed.createFolder('billing@example.com', 'ContactStorage');
  const billingRef = `\${file:${await ws.writeSecret('billing.password', 'pw-billing')}}`;
  await ws.writeServer('flow.yaml', flowYaml());
  for (const [user, short, dv, password] of [
    ['support@example.com', 'support', dovecot, await stack.ref('support@example.com')],
    ['sales@example.com', 'sales', dovecot, await stack.ref('sales@example.com')],
    ['billing@example.com', 'billing', doomed, billingRef],
  ] as const) {
    const fields = { shortName: short, name: `${short} inbox`, user, port: dv.ports.imap, caFile: dv.caFile, password };
    await ws.writeServer(`imap-${short}.yaml`, imapYaml(fields));
  }
  await ws.writeServer('relays.yaml', disabledRelays(RELAYS, billingRef));
  const daemon = await stack.startDaemon(['--no-watch']);
  const r = await cli(['apply', '--dir', ws.dir], ws.env);
  if (r.code !== 0) throw new Error(`apply failed: ${r.stdout}${r.stderr}`);
  await doomed.stop();
  for (let i = 0; i < 12; i++)
    await dovecot.deliver('support@example.com', `Subject: m${i}\r\nMessage-ID: <b${i}@x>\r\n\r\nx\r\n`);

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${daemon.url}/`);
  const total = RELAYS + 3;
  await eventually(async () => (await page.locator('tr.server').count()) === total, 30_000, 'every row drawn');
  const data = await (await fetch(`${daemon.url}/status.json`)).json();

  // Each round draws the page's table again from the same data, then the bare baseline from the same data.
  const drawMs: number[] = [];
  const bareMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    drawMs.push(
      await page.evaluate(() => {
        document.querySelector<HTMLInputElement>('#search')!.dispatchEvent(new Event('input'));
        return (window as unknown as { mailctlDrawMs: number }).mailctlDrawMs;
      }),
    );
    bareMs.push(
      await page.evaluate((st: { servers: { id: string; name: string; host: string; state: string }[] }) => {
        const started = performance.now();
        const table = document.createElement('table');
        table.innerHTML = st.servers
          .map((s) => `<tr><td>${s.state}</td><td>${s.name} ${s.id}</td><td>${s.host}</td></tr>`)
          .join('');
        document.body.append(table);
        void table.offsetHeight; // layout, as the page's draw is followed by one
        const ms = performance.now() - started;
        table.remove();
        return ms;
      }, data),
    );
  }
  const time = async (action: () => Promise<void>) => {
    await action();
    return page.evaluate(() => (window as unknown as { mailctlDrawMs: number }).mailctlDrawMs);
  };
  const filterMs = await time(() => page.locator('#filters button[data-filter="disabled"]').click());
  await page.locator('#filters button[data-filter="all"]').click();
  const searchMs = await time(() => page.locator('#search').fill('relay-0777'));
  await page.locator('#search').fill('');
  if (screenshot) {
    await page.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
  }

  const draw = median(drawMs);
  const bare = median(bareMs);
  const line = (label: string, value: string) => `| ${label} | ${value} |`;
  const section = [
    '',
    `## Status page, ${new Date().toISOString().slice(0, 10)} (bench:status-page)`,
    '',
    `${total} servers (${RELAYS} disabled SMTP relays, two running IMAP servers, one failing), headless Chromium ` +
      `${browser.version()}, median of ${ROUNDS} draws of the same data.`,
    '',
    '| measure | value |',
    '| --- | --- |',
    line('draw the whole table (search box input, all rows)', `${draw.toFixed(1)} ms`),
    line('— baseline: the same rows as one innerHTML of a bare table', `${bare.toFixed(1)} ms`),
    line('— ratio to the baseline', `${(draw / bare).toFixed(2)}×`),
    line('click the "Disabled" filter (1,000 rows)', `${filterMs.toFixed(1)} ms`),
    line('search for one host', `${searchMs.toFixed(1)} ms`),
    '',
  ].join('\n');
  console.log(section);
  await appendToBenchmarks('Status page', `${section}\n`);
} finally {
  await browser.close();
  await Promise.all([stack.stop(), doomed.stop()]);
}
