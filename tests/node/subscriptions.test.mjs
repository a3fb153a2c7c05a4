// Black-box test of ordergraph's GraphQL subscriptions with the real `graphql-ws` client.
//
// Starts `ordergraph serve` (harness.mjs: a fresh database, random JWT secret, free
// port), mints tokens, changes state over HTTP and watches it over
// `graphql-transport-ws` on /graphql.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph node --test subscriptions.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import {
  STEP_TIMEOUT_MS,
  gql,
  randomToken,
  scenario,
  server,
  show,
  startServer,
  stopServer,
  withTimeout,
} from './harness.mjs';


const PRODUCT_UPDATED = `subscription($ids: [UUID!], $after: Position) {
  productUpdated(ids: $ids, after: $after) { id stock position }
}`;
const CART_UPDATED = `subscription { cartUpdated { userId itemCount position } }`;
const CREATE_PRODUCT = `mutation($i: CreateProductInput!) {
  createProduct(input: $i) { position product { id stock position } }
}`;
const ADJUST_STOCK = `mutation($i: AdjustStockInput!) {
  adjustStock(input: $i) { position product { stock } }
}`;
const ADD_TO_CART = `mutation($i: CartItemInput!) {
  addToCart(input: $i) { position cart { itemCount } }
}`;

function assertPosition(position, what) {
  assert.equal(typeof position, 'string', `${what}: a Position is a string, got ${show(position)}`);
  assert.match(position, /^\d+$/, `${what}: a Position is a string of digits, got ${show(position)}`);
}

function assertAfter(later, earlier, what) {
  assert.ok(BigInt(later) > BigInt(earlier), `${what}: expected position ${later} > ${earlier}`);
}

async function createProduct(initialStock) {
  const sku = `NODE-${randomToken(6).toUpperCase()}`;
  const data = await gql(
    CREATE_PRODUCT,
    { i: { sku, name: 'Node test', price: '9.99', initialStock } },
    server.adminToken,
    `createProduct ${sku}`,
  );
  const { position, product } = data.createProduct;
  assertPosition(position, 'createProduct.position');
  assert.equal(product.stock, initialStock, `createProduct: ${show(data)}`);
  return { id: product.id, position };
}

async function adjustStock(productId, delta) {
  const data = await gql(
    ADJUST_STOCK,
    { i: { productId, delta } },
    server.adminToken,
    `adjustStock(${delta})`,
  );
  assertPosition(data.adjustStock.position, 'adjustStock.position');
  return data.adjustStock;
}

// ---------------------------------------------------------------------------------------
// GraphQL over WebSocket (graphql-ws)

/**
 * A graphql-ws client that keeps a transcript of its connection's events and messages
 * (for failure messages).
 */
function wsClient(authorization, options = {}) {
  const transcript = [];
  const note = (entry) => {
    transcript.push(entry);
    if (transcript.length > 40) {
      transcript.splice(0, transcript.length - 40);
    }
  };
  const { on = {}, ...rest } = options;
  const client = createClient({
    url: server.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { authorization },
    retryAttempts: 5,
    lazy: true,
    ...rest,
    on: {
      connecting: () => note('connecting'),
      opened: () => note('opened (WebSocket upgraded)'),
      connected: () => note('connected (connection_ack)'),
      message: (message) => note(`message ${show(message, 300)}`),
      closed: (event) => {
        note(`closed: ${show(event)}`);
        on.closed?.(event);
      },
      error: (error) => {
        note(`error: ${show(error)}`);
        on.error?.(error);
      },
    },
  });
  const unsubscribers = [];
  return {
    client,
    unsubscribers,
    transcript: () => `connection transcript:\n  ${transcript.join('\n  ') || '(nothing)'}`,
    /** Ends its subscriptions and closes the socket (Normal Closure), or drops it if that hangs. */
    async dispose() {
      for (const unsubscribe of unsubscribers.splice(0)) {
        unsubscribe();
      }
      try {
        await withTimeout(client.dispose(), 5_000, 'the graphql-ws client to close');
      } catch {
        client.terminate();
      }
    },
  };
}

/** One subscription, read payload by payload. */
function subscribe(ws, query, variables, label) {
  const queue = [];
  const received = [];
  let wake = () => {};
  const push = (item) => {
    received.push(item);
    queue.push(item);
    wake();
  };
  const unsubscribe = ws.client.subscribe(
    { query, variables },
    {
      next: (value) => push({ next: value }),
      error: (error) => push({ error }),
      complete: () => push({ complete: true }),
    },
  );
  const context = () =>
    `${label}: received so far: ${received.length ? received.map((r) => show(r.error ?? r, 400)).join(', ') : 'nothing'}\n${ws.transcript()}`;

  ws.unsubscribers.push(unsubscribe);

  return {
    context,
    /** The next `data` of this subscription; an error, a completion or errors in the payload fail. */
    async next(what) {
      const deadline = Date.now() + STEP_TIMEOUT_MS;
      while (queue.length === 0) {
        const signal = new Promise((resolve) => {
          wake = resolve;
        });
        await withTimeout(signal, deadline - Date.now(), `${label}: ${what}`, context);
      }
      const item = queue.shift();
      if (item.error !== undefined) {
        assert.fail(`${label}: ${what}: the subscription failed: ${show(item.error)}\n${context()}`);
      }
      if (item.complete) {
        assert.fail(`${label}: ${what}: the subscription completed\n${context()}`);
      }
      const { errors, data } = item.next;
      if (Array.isArray(errors) && errors.length > 0) {
        assert.fail(`${label}: ${what}: GraphQL errors: ${errors.map((e) => e.message).join('; ')}\n${context()}`);
      }
      assert.ok(data, `${label}: ${what}: a payload without data\n${context()}`);
      return data;
    },
  };
}

// ---------------------------------------------------------------------------------------
// The tests

describe('ordergraph subscriptions over graphql-ws', () => {
  before(startServer);
  after(stopServer);

  scenario('productUpdated: state first, then each change; resumes after a position', async () => {
    const product = await createProduct(5);
    const ids = [product.id];

    // Live: the current state, then the change.
    const first = wsClient(`Bearer ${server.adminToken}`);
    let lastSeen;
    try {
      const sub = subscribe(first, PRODUCT_UPDATED, { ids }, 'productUpdated (1st client)');
      const state = (await sub.next('the current state')).productUpdated;
      assert.equal(state.id, product.id, sub.context());
      assert.equal(state.stock, 5, sub.context());
      assertPosition(state.position, 'productUpdated.position (state)');
      assert.equal(state.position, product.position, `state position = createProduct's\n${sub.context()}`);

      const plus3 = await adjustStock(product.id, 3);
      assert.equal(plus3.product.stock, 8);
      const change = (await sub.next('the change of adjustStock(+3)')).productUpdated;
      assert.equal(change.id, product.id, sub.context());
      assert.equal(change.stock, 8, sub.context());
      assertPosition(change.position, 'productUpdated.position (change)');
      assert.equal(change.position, plus3.position, `change position = adjustStock's\n${sub.context()}`);
      assertAfter(change.position, state.position, 'productUpdated positions increase');
      lastSeen = change.position;
    } finally {
      await first.dispose();
    }

    // A change while disconnected, then a new client resumes after the last position seen.
    const minus1 = await adjustStock(product.id, -1);
    assert.equal(minus1.product.stock, 7);
    const second = wsClient(`Bearer ${server.adminToken}`);
    try {
      const sub = subscribe(second, PRODUCT_UPDATED, { ids, after: lastSeen }, 'productUpdated (2nd client)');
      const state = (await sub.next('the current state after reconnecting')).productUpdated;
      assert.equal(state.id, product.id, sub.context());
      assert.equal(state.stock, 7, sub.context());
      assertPosition(state.position, 'productUpdated.position (resumed state)');
      assert.equal(state.position, minus1.position, `resumed state position = adjustStock(-1)'s\n${sub.context()}`);
      assertAfter(state.position, lastSeen, 'the resumed state is newer than `after`');

      const plus2 = await adjustStock(product.id, 2);
      const change = (await sub.next('the change of adjustStock(+2)')).productUpdated;
      assert.equal(change.stock, 9, sub.context());
      assert.equal(change.position, plus2.position, `change position = adjustStock(+2)'s\n${sub.context()}`);
      assertAfter(change.position, state.position, 'productUpdated positions increase');
    } finally {
      await second.dispose();
    }
  });

  scenario("cartUpdated: the caller's cart, then each change", async () => {
    const product = await createProduct(5);
    const ws = wsClient(`Bearer ${server.aliceToken}`);
    try {
      const sub = subscribe(ws, CART_UPDATED, {}, 'cartUpdated (alice)');
      const state = (await sub.next('the current (empty) cart')).cartUpdated;
      assert.equal(state.userId, 'node-alice', sub.context());
      assert.equal(state.itemCount, 0, sub.context());
      assertPosition(state.position, 'cartUpdated.position (state)');

      const data = await gql(
        ADD_TO_CART,
        { i: { productId: product.id, quantity: 2 } },
        server.aliceToken,
        'addToCart as alice',
      );
      assertPosition(data.addToCart.position, 'addToCart.position');
      const change = (await sub.next('the change of addToCart')).cartUpdated;
      assert.equal(change.userId, 'node-alice', sub.context());
      assert.equal(change.itemCount, 2, sub.context());
      assert.equal(change.position, data.addToCart.position, `change position = addToCart's\n${sub.context()}`);
      assertAfter(change.position, state.position, 'cartUpdated positions increase');
    } finally {
      await ws.dispose();
    }
  });

  scenario("a client's close is answered: the socket closes cleanly with the client's code", async () => {
    const product = await createProduct(1);
    let onClosed;
    const closed = new Promise((resolve) => {
      onClosed = resolve;
    });
    const ws = wsClient(`Bearer ${server.aliceToken}`, { on: { closed: (event) => onClosed(event) } });
    const sub = subscribe(ws, PRODUCT_UPDATED, { ids: [product.id] }, 'productUpdated (closing client)');
    await sub.next('the current state');

    // graphql-ws ends its subscriptions and closes the socket with 1000 Normal Closure.
    await ws.dispose();

    const event = await withTimeout(closed, STEP_TIMEOUT_MS, 'the close event', sub.context);
    // `ws` reports 1006 and wasClean false unless the server answers the Close frame.
    assert.equal(event.code, 1000, `close code\n${sub.context()}`);
    assert.equal(event.wasClean, true, `a clean close\n${sub.context()}`);
  });

  scenario('an invalid token in connection_init closes the connection with 4403', async () => {
    let onClosed;
    const closed = new Promise((resolve) => {
      onClosed = resolve;
    });
    const ws = wsClient('Bearer not-a-jwt', {
      retryAttempts: 0,
      shouldRetry: () => false,
      on: { closed: (event) => onClosed(event) },
    });
    try {
      const sub = subscribe(ws, CART_UPDATED, {}, 'cartUpdated (invalid token)');
      const event = await withTimeout(closed, STEP_TIMEOUT_MS, 'the connection to close', sub.context);
      assert.equal(event.code, 4403, `close code\n${sub.context()}`);
      // The subscription ends with that close, never with a payload.
      await assert.rejects(sub.next('the subscription to fail'), /the subscription failed: close event \{code: 4403/);
    } finally {
      await ws.dispose();
    }
  });
});
