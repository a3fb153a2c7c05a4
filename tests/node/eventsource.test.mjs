// A browser's own EventSource subscribes with GraphQL over Server-Sent Events on a GET
// (graphql-sse's distinct connections mode, the request in the URL): EventSource can
// only GET, and sends `Accept: text/event-stream` and no headers of the page's choosing.
// In headless Chromium, on a page of the server's own origin.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph CHROMIUM=/usr/bin/chromium node --test eventsource.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

import { adjustStock, createProduct } from './catalog.mjs';
import { STEP_TIMEOUT_MS, scenario, server, show, startServer, stopServer } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let browser;

/** Waits until the page's EventSource has received a result that `accept`s. */
async function received(page, accept, what) {
  try {
    await page.waitForFunction(
      (accept) => window.received.some((r) => new Function('r', `return ${accept}`)(r)),
      accept,
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch (e) {
    const all = await page.evaluate(() => window.received);
    throw new Error(`the EventSource did not receive ${what}: ${show(all)} (${e.message})`);
  }
}

describe('GraphQL over SSE from a browser EventSource (GET)', () => {
  before(async () => {
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

  scenario('receives the current state first, then each change as it happens', async () => {
    const product = await createProduct(4, 'EVENTSOURCE');
    const context = await browser.newContext();
    const page = await context.newPage();
    // Any page of the server's origin: EventSource is same-origin here, no CORS involved.
    await page.goto(`${server.httpUrl}/healthz`, { timeout: STEP_TIMEOUT_MS });

    await page.evaluate((id) => {
      window.received = [];
      const query = 'subscription ($ids: [UUID!]) { productUpdated(ids: $ids) { sku stock } }';
      const url =
        `/graphql?query=${encodeURIComponent(query)}` +
        `&variables=${encodeURIComponent(JSON.stringify({ ids: [id] }))}`;
      window.source = new EventSource(url);
      window.source.addEventListener('next', (e) => window.received.push(JSON.parse(e.data)));
      window.source.addEventListener('error', () => window.received.push({ transportError: true }));
    }, product.id);

    await received(page, 'r.data?.productUpdated?.stock === 4', 'the current state (stock 4)');
    await adjustStock(product.id, 3);
    await received(page, 'r.data?.productUpdated?.stock === 7', 'the change (stock 7)');

    const all = await page.evaluate(() => {
      window.source.close();
      return window.received;
    });
    assert.deepEqual(
      all.filter((r) => r.errors || r.transportError),
      [],
      `no error on the stream: ${show(all)}`,
    );
    assert.deepEqual(all[0], { data: { productUpdated: { sku: product.sku, stock: 4 } } });
    await context.close();
  });
});
