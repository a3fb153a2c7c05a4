// The live console at /console, in headless Chromium, as an operator uses it, on a
// machine with no network: every request that would leave the server's origin is
// recorded and aborted, and the test fails if there was any.
//
// It signs in (a customer's token is refused, an admin's kept in sessionStorage), watches
// orders placed through the API appear and reach CONFIRMED (or REJECTED, with the
// reason) within a second, the figures change with them, an order's details and its
// history, each projection's position, a verify and a rebuild with its progress, the
// cluster (the replica and the units it holds, as the `cluster` query has them), a
// product's stock and price over time; then the server restarts while the page cannot
// reach it and orders are placed meanwhile, and the page resumes from its last position:
// every order shown once, none missing; and the units, now held by the restarted
// process (a new node id), are highlighted as moved to it.
//
// A screenshot of each state is written to target/node-tests/console-<database>/
// (sqlite or postgres; CONSOLE_SCREENSHOTS=<dir> writes them there instead).
//
//   ORDERGRAPH_BIN=/path/to/ordergraph CHROMIUM=/usr/bin/chromium node --test console.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { createProduct } from './catalog.mjs';
import { CONFIRMED_WITHIN_MS, clusterNow, placeOrder, readClusterPanel, screenshotsDir } from './console-page.mjs';
import { STEP_TIMEOUT_MS, gql, restartServer, scenario, server, show, startServer, stopServer } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = screenshotsDir('console');

let browser;

/** The console in a fresh browser context, every request recorded, the off-origin ones aborted. */
async function openConsole() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1300 } });
  const requests = [];
  const offOrigin = [];
  const origin = new URL(server.httpUrl);
  const isOwn = (url) => {
    const u = new URL(url);
    return u.host === origin.host && (u.protocol === 'http:' || u.protocol === 'ws:');
  };
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isOwn(url)) {
      return route.continue();
    }
    offOrigin.push(url);
    return route.abort('internetdisconnected');
  });
  const page = await context.newPage();
  // The page's WebSockets pass through a switch: while `network.cut`, a new one is closed
  // at once, as when the network is down (the browser's offline mode leaves WebSockets
  // alone).
  const network = { cut: false };
  await page.routeWebSocket(/./, (socket) => {
    requests.push(socket.url());
    if (!isOwn(socket.url())) {
      offOrigin.push(socket.url());
    }
    if (network.cut || !isOwn(socket.url())) {
      socket.close({ code: 1006, reason: 'no network' });
      return;
    }
    socket.connectToServer();
  });
  const consoleErrors = [];
  page.on('pageerror', (err) => consoleErrors.push(String(err)));
  page.on('request', (request) => requests.push(request.url()));
  await page.goto(`${server.httpUrl}/console`, { timeout: STEP_TIMEOUT_MS });
  return { context, page, network, requests, offOrigin, consoleErrors };
}

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  const file = path.join(SCREENSHOTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function signIn(page, token) {
  await page.locator('textarea[name=token]').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** The page's order rows: id, status, the saga trail shown, reason. */
function orderRows(page) {
  return page.$$eval('section.orders tbody tr', (rows) =>
    rows.map((row) => ({
      id: row.dataset.order,
      status: row.dataset.status,
      trail: [...row.querySelectorAll('.chip')].map((chip) => chip.textContent),
      reason: row.querySelector('.reason')?.textContent ?? '',
    })),
  );
}

/** Waits for the row of order `id` in `status`; resolves to the ms it took. */
async function rowReaches(page, id, status, timeout = STEP_TIMEOUT_MS) {
  const started = Date.now();
  try {
    await page.locator(`section.orders tr[data-order="${id}"][data-status="${status}"]`).waitFor({ timeout });
  } catch (err) {
    throw new Error(`order ${id} did not reach ${status} on the page within ${timeout} ms; rows: ${show(await orderRows(page), 3000)}\n${err.message}`);
  }
  return Date.now() - started;
}

async function dashboard() {
  return (
    await gql(
      '{ dashboard { revenue ordersByStatus { status count } position } }',
      {},
      server.adminToken,
      'dashboard',
    )
  ).dashboard;
}

/** The figures as the page shows them. */
function figures(page) {
  return page.$eval('section.figures', (section) => ({
    revenue: section.querySelector('[data-testid=revenue]')?.textContent,
    byStatus: Object.fromEntries(
      [...section.querySelectorAll('.bar')].map((bar) => [bar.dataset.status, Number(bar.dataset.count)]),
    ),
  }));
}

/** The cluster panel: its replicas and units, as the page shows them. */
async function readCluster(page) {
  const panel = page.locator('section.cluster[data-node]');
  return (await panel.count()) === 0 ? { replicas: [], units: [] } : panel.evaluate(readClusterPanel);
}

/** Waits until `read()` satisfies `accept`; the last value read is in the failure. */
async function eventually(read, accept, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let last;
  while (Date.now() < deadline) {
    last = await read();
    if (accept(last)) {
      return last;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`gave up waiting for ${what}; last seen: ${show(last, 3000)}`);
}

describe('the live console at /console, in Chromium, with no network', () => {
  before(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    await startServer();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 60_000,
    });
  });
  after(async () => {
    await browser?.close();
    await stopServer();
  });

  scenario('signs in, follows orders, figures and projections live, and resumes after a restart', async () => {
    const consolePage = await openConsole();
    const { page, context, network } = consolePage;

    // Sign in: a customer's token is refused with its code, an admin's is kept for this tab.
    await page.locator('form.signin').waitFor({ timeout: STEP_TIMEOUT_MS });
    await screenshot(page, 'sign-in');
    await signIn(page, server.aliceToken);
    await page.getByRole('alert').filter({ hasText: 'FORBIDDEN' }).waitFor({ timeout: STEP_TIMEOUT_MS });
    await signIn(page, server.adminToken);
    await page.locator('[data-testid=connection][data-state=live]').waitFor({ timeout: STEP_TIMEOUT_MS });
    await page.locator('section.figures [data-testid=revenue]').waitFor({ timeout: STEP_TIMEOUT_MS });
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem('ordergraph.console.token')),
      server.adminToken,
      'the token is kept in sessionStorage',
    );
    const before = await figures(page);
    assert.equal(before.revenue, '0.00', show(before));
    await screenshot(page, 'signed-in');

    // Orders placed through the API appear and pass through the saga, within a second.
    const product = await createProduct(40, 'CONSOLE');
    const confirmed = [];
    for (let i = 0; i < 2; i += 1) {
      const id = await placeOrder(product.id, 2, 'tok_visa');
      const took = await rowReaches(page, id, 'CONFIRMED', CONFIRMED_WITHIN_MS);
      assert.ok(took <= CONFIRMED_WITHIN_MS, `order ${id} CONFIRMED on the page after ${took} ms`);
      confirmed.push(id);
    }
    const declined = await placeOrder(product.id, 1, 'tok_decline');
    await rowReaches(page, declined, 'REJECTED', CONFIRMED_WITHIN_MS);
    let rows = await orderRows(page);
    const declinedRow = rows.find((r) => r.id === declined);
    assert.match(declinedRow.reason, /declined/i, show(declinedRow));
    // The trail is the statuses the page was sent, in the saga's order (a state the saga
    // left before the page read it is conflated away, never shown out of order or twice).
    const saga = ['PENDING', 'RESERVED', 'CONFIRMED'];
    for (const id of confirmed) {
      const row = rows.find((r) => r.id === id);
      assert.equal(row.trail.at(-1), 'CONFIRMED', show(row));
      const steps = row.trail.map((status) => saga.indexOf(status));
      assert.ok(
        steps.every((step, i) => step >= 0 && (i === 0 || step > steps[i - 1])),
        `the saga's statuses in order, each once: ${show(row)}`,
      );
    }

    // The figures moved with them: the API's own figures, on the page.
    const expected = await dashboard();
    const shown = await eventually(
      () => figures(page),
      (f) => f.revenue === expected.revenue && f.byStatus.CONFIRMED === 2 && f.byStatus.REJECTED === 1,
      `the figures of ${show(expected)}`,
    );
    assert.equal(shown.revenue, '18.00', '2 orders of 2 × 4.50');
    assert.notEqual(shown.revenue, before.revenue);
    await page.locator('section.figures svg.spark[data-points]').first().waitFor({ timeout: STEP_TIMEOUT_MS });
    await screenshot(page, 'orders-and-figures');

    // An order's details and its history: the event trail with who and why.
    await page.locator(`section.orders tr[data-order="${declined}"]`).click();
    const details = page.locator(`section.details[data-order="${declined}"]`);
    await details.waitFor({ timeout: STEP_TIMEOUT_MS });
    const history = (
      await gql(
        'query($id: UUID!) { history(streamId: $id) { edges { node { type } } } }',
        { id: declined },
        server.adminToken,
        'history',
      )
    ).history.edges.map((e) => e.node.type);
    const shownHistory = await eventually(
      () => details.locator('table.history tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.event)),
      (types) => types.length === history.length,
      `the history ${show(history)}`,
    );
    assert.deepEqual(shownHistory, history);
    assert.equal(shownHistory[0], 'OrderPlaced');
    assert.equal(await details.locator('[data-testid=detail-status]').textContent(), 'REJECTED');
    assert.match(await details.locator('table.history').textContent(), /node-alice/, 'who placed it');
    assert.match(await details.locator('table.history').textContent(), /declined/i, 'why it was rejected');
    await screenshot(page, 'order-details');

    // Projections: positions as the API has them; verify, then a rebuild with its progress.
    const projections = (
      await gql('{ projections { name position status } }', {}, server.adminToken, 'projections')
    ).projections;
    const shownProjections = await eventually(
      () =>
        page.$$eval('section.projections tbody tr', (trs) =>
          trs.map((tr) => ({
            name: tr.dataset.projection,
            status: tr.dataset.status,
            position: tr.querySelector('[data-testid=position]')?.textContent,
          })),
        ),
      (table) =>
        projections.every((p) =>
          table.some((t) => t.name === p.name && t.status === 'RUNNING' && BigInt(t.position) >= BigInt(p.position)),
        ),
      `every projection RUNNING at or past ${show(projections)}`,
    );
    assert.equal(shownProjections.length, projections.length, show(shownProjections));
    const orders = page.locator('tr[data-projection=orders]');
    await orders.getByRole('button', { name: 'Verify' }).click();
    await orders.locator('[data-testid=verify][data-ok=true]').waitFor({ timeout: STEP_TIMEOUT_MS });
    await orders.getByRole('button', { name: 'Rebuild' }).click();
    const rebuild = orders.locator('[data-testid=rebuild][data-phase=DONE]');
    await rebuild.waitFor({ timeout: STEP_TIMEOUT_MS });
    const progress = await rebuild.evaluate((el) => ({
      value: el.querySelector('progress').value,
      text: el.textContent,
      seen: el.dataset.seen,
    }));
    assert.equal(progress.value, 100, show(progress));
    const [, done, total] = progress.text.match(/(\d+)\/(\d+) events/) ?? [];
    assert.ok(Number(total) > 0 && done === total, `every event replayed: ${show(progress)}`);
    assert.match(progress.seen, /REPLAYING.*DONE/, `the phases the bar went through: ${show(progress)}`);
    await screenshot(page, 'projections-verify-rebuild');

    // The cluster: the replica and the units it holds, as the `cluster` query has them
    // (one process: every unit, on either database), pushed by `clusterUpdated`.
    const cluster = await eventually(clusterNow, (c) => c.units.every((u) => u.holder === c.node), 'every unit held');
    const shownCluster = await eventually(
      () => readCluster(page),
      (c) =>
        c.replicas.length === 1 &&
        c.replicas[0].id === cluster.node &&
        c.replicas[0].alive &&
        c.replicas[0].units === cluster.units.length &&
        c.units.length === cluster.units.length &&
        c.units.every((u) => u.holder === cluster.node),
      `the replica ${cluster.node} holding every unit of ${show(cluster)}`,
    );
    assert.deepEqual(
      shownCluster.units.map((u) => u.name),
      cluster.units.map((u) => u.name),
      'the units as the API lists them',
    );
    assert.ok(
      shownCluster.units.every((u) => u.moved === null),
      `nothing moved while the page watched: ${show(shownCluster)}`,
    );
    await screenshot(page, 'cluster');

    // A product's stock and price over time, from the log.
    const timeline = (
      await gql(
        'query($id: UUID!) { productTimeline(id: $id, last: 50) { version stock } }',
        { id: product.id },
        server.adminToken,
        'productTimeline',
      )
    ).productTimeline;
    // The list is read when the select takes the focus, as when a person opens it.
    await page.locator('section.product select').focus();
    await page.locator('section.product select').selectOption(product.id);
    await page
      .locator(`section.product .series[data-versions="${timeline.map((c) => c.version).join(' ')}"]`)
      .waitFor({ timeout: STEP_TIMEOUT_MS });
    assert.equal(
      await page.locator('section.product svg.timechart').first().getAttribute('data-points'),
      String(timeline.length),
    );
    await screenshot(page, 'product-over-time');

    // The server restarts while the page cannot reach it, and orders are placed meanwhile:
    // the page resumes from its last position, and shows each order once, none missing.
    rows = await orderRows(page);
    network.cut = true;
    await restartServer();
    await page.locator('[data-testid=connection][data-state=reconnecting]').waitFor({ timeout: STEP_TIMEOUT_MS });
    const whileAway = [await placeOrder(product.id, 1, 'tok_visa'), await placeOrder(product.id, 1, 'tok_visa')];
    await screenshot(page, 'reconnecting');
    network.cut = false;
    await page.locator('[data-testid=connection][data-state=live]').waitFor({ timeout: STEP_TIMEOUT_MS });
    // The restarted process is another replica (a new node id): the page shows every unit
    // moved to it, highlighted for a few seconds, the old one gone.
    const restarted = await clusterNow();
    assert.notEqual(restarted.node, cluster.node, 'a restarted process has a new node id');
    const moved = await eventually(
      () => readCluster(page),
      (c) => c.units.length > 0 && c.units.every((u) => u.holder === restarted.node && u.moved !== null),
      `every unit moved to ${restarted.node}`,
    );
    for (const unit of moved.units) {
      assert.match(unit.moved, new RegExp(`^${cluster.node} → .*${restarted.node}$`), show(unit));
    }
    assert.ok(
      moved.replicas.some((r) => r.id === restarted.node && r.alive) &&
        moved.replicas.every((r) => r.id === restarted.node || !r.alive),
      `the restarted replica alive, the old one gone (or no longer listed): ${show(moved.replicas)}`,
    );
    await screenshot(page, 'cluster-after-restart');
    for (const id of whileAway) {
      await rowReaches(page, id, 'CONFIRMED');
    }
    const after = await orderRows(page);
    const ids = after.map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, `no order twice: ${show(after, 3000)}`);
    assert.deepEqual(ids.toSorted(), [...rows.map((r) => r.id), ...whileAway].toSorted(), 'no order missing');
    for (const row of rows) {
      assert.deepEqual(after.find((r) => r.id === row.id), row, 'an order from before is as it was');
    }
    const resumed = await dashboard();
    await eventually(
      () => figures(page),
      (f) => f.revenue === resumed.revenue && f.byStatus.CONFIRMED === 4,
      `the figures after the restart, ${show(resumed)}`,
    );
    // New changes still arrive on the resumed subscriptions.
    const afterwards = await placeOrder(product.id, 1, 'tok_visa');
    await rowReaches(page, afterwards, 'CONFIRMED', CONFIRMED_WITHIN_MS);
    await screenshot(page, 'resumed');

    assert.deepEqual(consolePage.offOrigin, [], `requests that left the server's origin (all: ${show(consolePage.requests, 2000)})`);
    assert.ok(
      consolePage.requests.some((url) => url === server.wsUrl),
      `the page subscribed over a WebSocket to /graphql: ${show(consolePage.requests)}`,
    );
    assert.deepEqual(consolePage.consoleErrors, [], 'no script error on the page');
    await context.close();
  });
});
