// Drives the dashboard of a running revcache in headless Chromium for
// tests/dashboard.rs, and prints what it saw as one JSON object on stdout.
//
// Usage: node dashboard.mjs '<json>' with
//   modules     the node_modules that hold playwright-core
//   admin       the admin listener's base URL (http://127.0.0.1:PORT)
//   proxy       the proxy listener's base URL
//   token       the admin token
//   traffic     paths to request through the proxy while the page watches
//   screenshots the directory the screenshots go to
//
// It only reads and reports; the Rust test decides. Steps that cannot
// complete (a selector that never appears) end the script with an error.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const args = JSON.parse(process.argv[2]);
const require = createRequire(join(args.modules, 'noop.js'));
const { chromium } = require('playwright-core');

const WAIT = { timeout: 20000 };
const out = { console: [], page_errors: [] };
mkdirSync(args.screenshots, { recursive: true });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking'],
});

function watch(page) {
  page.on('console', (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => out.page_errors.push(String(e)));
}

const refreshes = (page) => page.evaluate(() => Number(document.body.dataset.refreshes || 0));
async function waitRefreshes(page, n) {
  await page.waitForFunction((n) => Number(document.body.dataset.refreshes || 0) >= n, n, WAIT);
}

// What the page shows: the text and the raw value of every number.
async function read(page) {
  return page.evaluate(() => {
    const stat = (name) => {
      const e = document.querySelector(`[data-stat="${name}"]`);
      return { text: e.textContent, value: e.dataset.value ?? null };
    };
    const routes = {};
    for (const tr of document.querySelectorAll('[data-table="routes"] tr[data-route]')) {
      const row = {};
      for (const td of tr.querySelectorAll('td[data-field]')) {
        row[td.dataset.field] = { text: td.textContent, value: td.dataset.value };
      }
      routes[tr.dataset.route] = row;
    }
    const feeds = {};
    for (const tr of document.querySelectorAll('[data-table="feeds"] tr[data-feed]')) {
      feeds[tr.dataset.feed] = tr.querySelector('[data-field="healthy"]').textContent;
    }
    const charts = {};
    for (const fig of document.querySelectorAll('[data-chart]')) {
      charts[fig.dataset.chart] = {
        samples: Number(fig.dataset.samples || 0),
        last: Number(fig.dataset.last || 0),
        draws: Number(fig.dataset.draws || 0),
        canvas: fig.querySelector('canvas') !== null,
      };
    }
    return {
      hit_ratio: stat('hit-ratio'),
      requests: stat('requests'),
      disk: stat('disk-tier').text,
      shared: stat('shared-tier').text,
      routes,
      feeds,
      charts,
    };
  });
}

const pixels = (page, chart) => page.evaluate(
  (chart) => document.querySelector(`[data-chart="${chart}"] canvas`).toDataURL(), chart,
);

// 1. Without the token: the page asks for it, and the API refuses the page.
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
watch(page);
await page.goto(args.admin + '/');
await page.waitForSelector('[data-role="token-form"]:not([hidden])', WAIT);
out.without_token = {
  error: await page.textContent('[data-role="error"]'),
  stats_status: await page.evaluate(async () => (await fetch('/stats')).status),
  refreshes: await refreshes(page),
};

// 2. With it (typed into the form): the numbers and charts appear.
await page.fill('[data-role="token-form"] input', args.token);
await page.click('[data-role="token-form"] button[type="submit"]');
await waitRefreshes(page, 2);
out.with_token = { form_hidden: await page.isHidden('[data-role="token-form"]') };

// 3. The charts follow new traffic.
const before = await read(page);
const beforePixels = await pixels(page, 'requests');
for (let round = 0; round < 3; round++) {
  for (const path of args.traffic) {
    const res = await fetch(args.proxy + path);
    await res.arrayBuffer();
  }
  await new Promise((r) => setTimeout(r, 700));
}
// Two refreshes that began after the last request: what they show is final.
const seen = await refreshes(page);
await waitRefreshes(page, seen + 2);
// and a sample taken after the traffic.
await page.waitForFunction(
  (t) => Number(document.querySelector('[data-chart="requests"]').dataset.last) >= t,
  Date.now() / 1000 + 1, WAIT,
);
const after = await read(page);
out.charts_before = before.charts;
out.charts_after = after.charts;
out.requests_chart_redrawn = beforePixels !== await pixels(page, 'requests');
out.shown = after;
await page.screenshot({ path: join(args.screenshots, 'dashboard-1280.png'), fullPage: true });

// 4. A narrow window: nothing wider than the window, every route listed.
await page.setViewportSize({ width: 400, height: 900 });
await waitRefreshes(page, (await refreshes(page)) + 1);
out.narrow = await page.evaluate(() => ({
  scroll_width: document.documentElement.scrollWidth,
  client_width: document.documentElement.clientWidth,
  routes: document.querySelectorAll('[data-table="routes"] tr[data-route]').length,
  widest_chart: Math.max(...[...document.querySelectorAll('[data-chart] canvas')]
    .map((c) => c.getBoundingClientRect().right)),
}));
await page.screenshot({ path: join(args.screenshots, 'dashboard-400.png'), fullPage: true });
await context.close();

// 5. A link that carries the token in its fragment: used, then dropped
// from the address bar.
const linked = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const second = await linked.newPage();
watch(second);
await second.goto(args.admin + '/#token=' + encodeURIComponent(args.token));
await waitRefreshes(second, 1);
out.fragment = {
  url: second.url(),
  form_hidden: await second.isHidden('[data-role="token-form"]'),
  requests: (await read(second)).requests,
};
await linked.close();

await browser.close();
process.stdout.write(JSON.stringify(out) + '\n');
