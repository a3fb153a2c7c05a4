// Black-box test of ordergraph's GraphQL subscriptions with the real `graphql-ws` client.
//
// Starts `ordergraph serve` (embedded SQLite in a fresh temporary directory, random JWT
// secret, free port), mints tokens with `ordergraph token`, changes state over HTTP and
// watches it over `graphql-transport-ws` on /graphql.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph node --test subscriptions.test.mjs
//
// ORDERGRAPH_BIN defaults to <repo>/target/debug/ordergraph. Every wait has a timeout, so
// a broken server fails the test (with what was received and the server's log) instead
// of hanging it.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(process.env.ORDERGRAPH_BIN || path.join(REPO, 'target', 'debug', 'ordergraph'));

const READY_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 10_000;
const TEST_TIMEOUT_MS = 120_000;
const SERVER_LOG_LINES = 80;

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

// ---------------------------------------------------------------------------------------
// Small helpers

/** Resolves like `promise`, or rejects once `ms` have passed; `context()` is added to the error. */
async function withTimeout(promise, ms, what, context) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const extra = context ? `\n${context()}` : '';
      reject(new Error(`timed out after ${ms} ms waiting for ${what}${extra}`));
    }, Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A compact, bounded rendering of anything received, for failure messages. */
function show(value, max = 600) {
  let s;
  if (value && typeof value === 'object' && 'code' in value && 'reason' in value) {
    s = `close event {code: ${value.code}, reason: ${JSON.stringify(String(value.reason))}}`;
  } else if (value instanceof Error) {
    s = `${value.name}: ${value.message}`;
  } else if (value && typeof value === 'object' && value.type === 'error' && 'message' in value) {
    s = `error event: ${value.message}`; // ws's ErrorEvent
  } else {
    try {
      s = JSON.stringify(value);
    } catch {
      s = String(value);
    }
  }
  return s === undefined ? String(value) : s.length > max ? `${s.slice(0, max)}…` : s;
}

function randomToken(bytes) {
  return randomBytes(bytes).toString('hex');
}

function assertPosition(position, what) {
  assert.equal(typeof position, 'string', `${what}: a Position is a string, got ${show(position)}`);
  assert.match(position, /^\d+$/, `${what}: a Position is a string of digits, got ${show(position)}`);
}

function assertAfter(later, earlier, what) {
  assert.ok(BigInt(later) > BigInt(earlier), `${what}: expected position ${later} > ${earlier}`);
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// ---------------------------------------------------------------------------------------
// The server under test

const server = {
  child: null,
  exited: null, // {code, signal} once the process is gone
  exitPromise: null,
  logLines: [],
  partial: { stdout: '', stderr: '' },
  port: 0,
  dataDir: null,
  env: null,
  adminToken: null,
  aliceToken: null,

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  },
  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/graphql`;
  },

  record(stream, chunk) {
    const text = this.partial[stream] + chunk.toString('utf8');
    const lines = text.split('\n');
    this.partial[stream] = lines.pop();
    for (const line of lines) {
      this.logLines.push(line);
    }
    if (this.logLines.length > SERVER_LOG_LINES) {
      this.logLines.splice(0, this.logLines.length - SERVER_LOG_LINES);
    }
  },

  logTail() {
    const lines = [...this.logLines, this.partial.stdout, this.partial.stderr].filter((l) => l !== '');
    const status = this.exited
      ? `exited (code ${this.exited.code}, signal ${this.exited.signal})`
      : 'running';
    return `--- ordergraph (${status}), last ${lines.length} log lines ---\n${lines.join('\n')}\n--- end of ordergraph log ---`;
  },
};

/** Runs `ordergraph <args>` to completion and returns its trimmed stdout. */
function runBin(args) {
  return withTimeout(
    new Promise((resolve, reject) => {
      execFile(BIN, args, { env: server.env, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`\`ordergraph ${args.join(' ')}\` failed: ${err.message}\nstderr: ${stderr}`));
        } else {
          resolve(stdout.trim());
        }
      });
    }),
    STEP_TIMEOUT_MS,
    `\`ordergraph ${args.join(' ')}\``,
  );
}

async function mintToken(sub, role) {
  const token = await runBin(['token', '--sub', sub, '--role', role]);
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, `\`ordergraph token\` printed no JWT: ${show(token)}`);
  return token;
}

async function waitUntilReady() {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (server.exited) {
      throw new Error(`ordergraph exited before it was ready\n${server.logTail()}`);
    }
    try {
      const res = await fetch(`${server.httpUrl}/readyz`, { signal: AbortSignal.timeout(2_000) });
      const body = await res.text();
      if (res.status === 200) {
        return;
      }
      last = `HTTP ${res.status}: ${body}`;
    } catch (err) {
      last = show(err.cause ?? err);
    }
    await sleep(200);
  }
  throw new Error(
    `GET /readyz did not answer 200 within ${READY_TIMEOUT_MS} ms (last: ${last})\n${server.logTail()}`,
  );
}

async function startServer() {
  server.port = await freePort();
  server.dataDir = await mkdtemp(path.join(os.tmpdir(), 'ordergraph-node-'));
  const env = {
    ...process.env,
    ORDERGRAPH_BIND: `127.0.0.1:${server.port}`,
    ORDERGRAPH_DATA_DIR: server.dataDir,
    ORDERGRAPH_JWT_SECRET: randomToken(24), // 48 characters
    NO_COLOR: '1', // plain log lines in failure messages
  };
  delete env.DATABASE_URL; // the embedded SQLite database in the data directory
  server.env = env;

  server.child = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.exitPromise = new Promise((resolve) => {
    server.child.once('exit', (code, signal) => {
      server.exited = { code, signal };
      resolve();
    });
  });
  const spawned = new Promise((resolve, reject) => {
    server.child.once('spawn', resolve);
    server.child.once('error', (err) => {
      if (server.child.pid === undefined) {
        server.exited = { code: null, signal: null }; // never started: no 'exit' follows
      }
      reject(new Error(`cannot start ${BIN}: ${err.message}`));
    });
  });
  server.child.stdout.on('data', (chunk) => server.record('stdout', chunk));
  server.child.stderr.on('data', (chunk) => server.record('stderr', chunk));
  await withTimeout(spawned, STEP_TIMEOUT_MS, `${BIN} to start`);

  await waitUntilReady();
  server.adminToken = await mintToken('node-admin', 'admin');
  server.aliceToken = await mintToken('node-alice', 'customer');
}

async function stopServer() {
  const { child } = server;
  if (child && !server.exited) {
    child.kill('SIGTERM');
    try {
      await withTimeout(server.exitPromise, 15_000, 'ordergraph to exit after SIGTERM');
    } catch {
      child.kill('SIGKILL');
      await withTimeout(server.exitPromise, 5_000, 'ordergraph to exit after SIGKILL').catch(() => {});
    }
  }
  if (server.dataDir) {
    await rm(server.dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// GraphQL over HTTP

/** POST /graphql; GraphQL errors (or a non-2xx answer) fail with their messages. */
async function gql(query, variables, token, what) {
  const exchange = (async () => {
    const res = await fetch(`${server.httpUrl}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
    });
    const text = await res.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`${what}: HTTP ${res.status}, not JSON: ${show(text)}`);
    }
    if (Array.isArray(body.errors) && body.errors.length > 0) {
      const messages = body.errors
        .map((e) => `${e.message}${e.extensions?.code ? ` [${e.extensions.code}]` : ''}`)
        .join('; ');
      throw new Error(`${what}: GraphQL errors: ${messages}\nresponse: ${show(body)}`);
    }
    if (!res.ok || !body.data) {
      throw new Error(`${what}: HTTP ${res.status}: ${show(body)}`);
    }
    return body.data;
  })();
  return withTimeout(exchange, STEP_TIMEOUT_MS + 1_000, what);
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

  /** `it`, with the server's log tail added to a failure. */
  const scenario = (name, fn) =>
    it(name, { timeout: TEST_TIMEOUT_MS }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        if (err instanceof Error) {
          err.message += `\n${server.logTail()}`;
        }
        throw err;
      }
    });

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
