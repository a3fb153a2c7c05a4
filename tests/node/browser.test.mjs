// The API from a real browser (headless Chromium, driven by playwright-core): a page on
// another origin calls it over HTTP (a CORS preflight first, as the bearer token makes the
// request non-simple) and opens a graphql-transport-ws WebSocket, when that origin is
// listed in ORDERGRAPH_CORS_ORIGINS; a page on an origin that is not listed can do
// neither. The browser's own WebSocket also checks the closing handshake: closing
// from the page ends with the page's code and `wasClean`.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph CHROMIUM=/usr/bin/chromium node --test browser.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { chromium } from 'playwright-core';

import { STEP_TIMEOUT_MS, freePort, scenario, server, startServer, stopServer, withTimeout } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** A page server: the same empty page on every path, for whatever origin it is reached by. */
const pages = {
  server: null,
  port: 0,
  /** Listed in ORDERGRAPH_CORS_ORIGINS. */
  get allowed() {
    return `http://127.0.0.1:${this.port}`;
  },
  /** The same server by another name: another origin, not listed. */
  get other() {
    return `http://localhost:${this.port}`;
  },
};

let browser;

async function startPages() {
  pages.port = await freePort();
  pages.server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>a shop front</title><p>another origin</p>');
  });
  await new Promise((resolve, reject) => {
    pages.server.once('error', reject);
    pages.server.listen(pages.port, '127.0.0.1', resolve);
  });
}

/** A fresh page at `origin`. */
async function pageAt(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${origin}/app`, { timeout: STEP_TIMEOUT_MS });
  return page;
}

/** In the page: POST a query with a bearer token; the JSON answer, or the fetch error. */
function postFromPage(page, api, token) {
  return page.evaluate(
    async ({ api, token }) => {
      try {
        const res = await fetch(`${api}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ query: '{ cart { userId itemCount } }' }),
        });
        return { status: res.status, body: await res.json() };
      } catch (err) {
        return { error: String(err) };
      }
    },
    { api, token },
  );
}

/**
 * In the page: open a graphql-transport-ws socket, send connection_init, wait for the ack,
 * then close with 1000. What happened, in order, with the close event.
 */
function websocketFromPage(page, wsUrl, token, timeoutMs) {
  return page.evaluate(
    ({ wsUrl, token, timeoutMs }) =>
      new Promise((resolve) => {
        const events = [];
        const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
        const timer = setTimeout(() => resolve({ events, timedOut: true }), timeoutMs);
        socket.onopen = () => {
          events.push('open');
          socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
        };
        socket.onmessage = (message) => {
          const { type } = JSON.parse(message.data);
          events.push(type);
          if (type === 'connection_ack') {
            socket.close(1000, 'done');
          }
        };
        socket.onerror = () => events.push('error');
        socket.onclose = (event) => {
          clearTimeout(timer);
          resolve({ events, code: event.code, wasClean: event.wasClean });
        };
      }),
    { wsUrl, token, timeoutMs },
  );
}

describe('the API from a page on another origin, in Chromium', () => {
  before(async () => {
    await startPages();
    await startServer({ ORDERGRAPH_CORS_ORIGINS: pages.allowed });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 60_000,
    });
  });
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (pages.server ? pages.server.close(resolve) : resolve()));
    await stopServer();
  });

  scenario('a listed origin calls the API with a bearer token (after a preflight)', async () => {
    const page = await pageAt(pages.allowed);
    const answer = await withTimeout(postFromPage(page, server.httpUrl, server.aliceToken), STEP_TIMEOUT_MS, 'the fetch');
    assert.equal(answer.error, undefined, JSON.stringify(answer));
    assert.equal(answer.status, 200, JSON.stringify(answer));
    assert.equal(answer.body.data.cart.userId, 'node-alice', JSON.stringify(answer));
  });

  scenario('a listed origin opens a WebSocket, and its close is a clean one', async () => {
    const page = await pageAt(pages.allowed);
    const result = await withTimeout(
      websocketFromPage(page, server.wsUrl, server.aliceToken, STEP_TIMEOUT_MS),
      STEP_TIMEOUT_MS + 1_000,
      'the WebSocket',
    );
    assert.deepEqual(result.events, ['open', 'connection_ack'], JSON.stringify(result));
    assert.equal(result.code, 1000, JSON.stringify(result));
    assert.equal(result.wasClean, true, `the server answered the Close frame: ${JSON.stringify(result)}`);
  });

  scenario('an origin that is not listed can neither read an answer nor open a WebSocket', async () => {
    const page = await pageAt(pages.other);
    const answer = await withTimeout(postFromPage(page, server.httpUrl, server.aliceToken), STEP_TIMEOUT_MS, 'the fetch');
    assert.match(answer.error ?? '', /Failed to fetch/, JSON.stringify(answer));

    const result = await withTimeout(
      websocketFromPage(page, server.wsUrl, server.aliceToken, STEP_TIMEOUT_MS),
      STEP_TIMEOUT_MS + 1_000,
      'the WebSocket',
    );
    assert.ok(!result.events.includes('open'), JSON.stringify(result));
    assert.equal(result.code, 1006, `refused at the handshake: ${JSON.stringify(result)}`);
  });
});
