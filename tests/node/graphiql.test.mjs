// GraphiQL at `/`, used in headless Chromium as a person would, on a machine with no
// network: every request that would leave the server's origin is recorded and aborted,
// and the test fails if there was any. GraphiQL runs a query, an authenticated query
// (the token typed into its Headers tab) and a subscription (over its WebSocket), and
// shows each result.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph CHROMIUM=/usr/bin/chromium node --test graphiql.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

import { adjustStock, createProduct } from './catalog.mjs';
import { STEP_TIMEOUT_MS, scenario, server, show, startServer, stopServer } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let browser;

/**
 * GraphiQL at `/` in a fresh browser context (fresh storage), with every request the page
 * makes recorded: `requests` has each HTTP request's URL and each WebSocket's, and
 * `offOrigin` those not on the server's origin, which are aborted as an air gap would.
 */
async function openGraphiql() {
  const context = await browser.newContext();
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
  page.on('request', (request) => requests.push(request.url()));
  page.on('websocket', (socket) => {
    requests.push(socket.url());
    if (!isOwn(socket.url())) {
      offOrigin.push(socket.url());
    }
  });
  await page.goto(`${server.httpUrl}/`, { timeout: STEP_TIMEOUT_MS });
  await page.locator('.graphiql-execute-button').waitFor({ timeout: STEP_TIMEOUT_MS });
  return { page, requests, offOrigin };
}

/** Types `text` into a GraphiQL editor (a CodeMirror inside the element `selector`). */
async function setEditor(page, selector, text) {
  await page.evaluate(
    ({ selector, text }) => {
      const editor = document.querySelector(`${selector} .CodeMirror`);
      if (!editor) {
        throw new Error(`no editor at ${selector}`);
      }
      editor.CodeMirror.setValue(text);
    },
    { selector, text },
  );
}

/**
 * The query in the editor, run with GraphiQL's Execute button once GraphiQL has parsed it
 * (it does so 100 ms after a change, and picks the transport by the parsed operation: a
 * click before that would run the previous document's).
 */
async function execute(page, query) {
  await setEditor(page, '.graphiql-query-editor', query);
  await page.waitForFunction(
    (query) => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.documentAST?.loc?.source.body === query,
    query,
    { timeout: STEP_TIMEOUT_MS },
  );
  await page.locator('.graphiql-execute-button').click();
}

/** `headers` (an object) typed into the Headers tab. */
async function setHeaders(page, headers) {
  await page.getByRole('button', { name: 'Headers', exact: true }).click();
  await setEditor(page, '.graphiql-editor-tool .graphiql-editor:not(.hidden)', JSON.stringify(headers));
}

/** Waits until the result pane holds JSON for which `accept` is true; returns it. */
async function result(page, accept, what) {
  let last = '';
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    last = await page.evaluate(() => document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue() ?? '');
    try {
      const json = JSON.parse(last);
      if (accept(json)) {
        return json;
      }
    } catch {
      // Not JSON yet (empty, or a subscription's "Loading…").
    }
    await page.waitForTimeout(50);
  }
  throw new Error(`GraphiQL did not show ${what} within ${STEP_TIMEOUT_MS} ms; the result pane holds: ${show(last)}`);
}

function assertStayedOnTheOrigin({ requests, offOrigin }) {
  assert.deepEqual(offOrigin, [], `requests that left the server's origin (all: ${show(requests, 2000)})`);
  assert.ok(requests.some((url) => url.endsWith('/graphql')), `GraphiQL called the API: ${show(requests)}`);
}

describe('GraphiQL at / with no network', () => {
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

  scenario('runs a query and shows its result', async () => {
    const product = await createProduct(3, 'GRAPHIQL');
    const graphiql = await openGraphiql();

    await execute(graphiql.page, `{ product(id: "${product.id}") { sku stock } }`);

    const shown = await result(graphiql.page, (r) => r.data?.product, 'the product');
    assert.deepEqual(shown, { data: { product: { sku: product.sku, stock: 3 } } });
    assertStayedOnTheOrigin(graphiql);
  });

  scenario('runs an authenticated query with the token in its Headers tab', async () => {
    const graphiql = await openGraphiql();
    await execute(graphiql.page, '{ cart { userId itemCount } }');
    const refused = await result(graphiql.page, (r) => r.errors, 'the error of a query without a token');
    assert.equal(refused.errors[0].extensions?.code, 'UNAUTHENTICATED', show(refused));

    await setHeaders(graphiql.page, { Authorization: `Bearer ${server.aliceToken}` });
    await graphiql.page.locator('.graphiql-execute-button').click();

    const shown = await result(graphiql.page, (r) => r.data?.cart, "alice's cart");
    assert.deepEqual(shown, { data: { cart: { userId: 'node-alice', itemCount: 0 } } });
    assertStayedOnTheOrigin(graphiql);
  });

  scenario('runs a subscription over its WebSocket and shows each change as it happens', async () => {
    const product = await createProduct(5, 'GRAPHIQL');
    const graphiql = await openGraphiql();

    await execute(graphiql.page, `subscription { productUpdated(ids: ["${product.id}"]) { sku stock } }`);
    await result(graphiql.page, (r) => r.data?.productUpdated?.stock === 5, 'the current state (stock 5)');
    for (const [delta, stock] of [
      [2, 7],
      [-4, 3],
    ]) {
      await adjustStock(product.id, delta);
      const shown = await result(graphiql.page, (r) => r.data?.productUpdated?.stock === stock, `stock ${stock}`);
      assert.deepEqual(shown, { data: { productUpdated: { sku: product.sku, stock } } });
    }

    assertStayedOnTheOrigin(graphiql);
    const sockets = graphiql.requests.filter((url) => url.startsWith('ws:'));
    assert.deepEqual(sockets, [server.wsUrl], 'the subscription went over a WebSocket to /graphql');
  });
});
