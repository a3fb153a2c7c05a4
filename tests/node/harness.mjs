// The server under test, for every Node test: `ordergraph serve` on a free port with a
// fresh database, a random JWT secret and tokens minted with `ordergraph token`, plus
// the small helpers every test needs (a bounded wait, a compact rendering of what was
// received, GraphQL over HTTP).
//
//   ORDERGRAPH_BIN=/path/to/ordergraph node --test
//
// ORDERGRAPH_BIN defaults to <repo>/target/debug/ordergraph. The database is an embedded
// SQLite file in a temporary directory, or, when TEST_DATABASE_URL names a PostgreSQL
// server (as for the Rust tests), a database of its own created there with `psql` and
// dropped afterwards. Every wait has a timeout, so a broken server fails the test (with
// what was received and the server's log) instead of hanging it.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(process.env.ORDERGRAPH_BIN || path.join(REPO, 'target', 'debug', 'ordergraph'));

const READY_TIMEOUT_MS = 60_000;
export const STEP_TIMEOUT_MS = 10_000;
export const TEST_TIMEOUT_MS = 120_000;
const SERVER_LOG_LINES = 80;

// ---------------------------------------------------------------------------------------
// Small helpers

/** Resolves like `promise`, or rejects once `ms` have passed; `context()` is added to the error. */
export async function withTimeout(promise, ms, what, context) {
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
export function show(value, max = 600) {
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

export function randomToken(bytes) {
  return randomBytes(bytes).toString('hex');
}

export async function freePort() {
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

export const server = {
  child: null,
  exited: null, // {code, signal} once the process is gone
  exitPromise: null,
  logLines: [],
  partial: { stdout: '', stderr: '' },
  port: 0,
  dataDir: null,
  postgres: null, // {admin, name} of the PostgreSQL database made for this server
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

/** Runs one SQL statement with `psql` on the server of `url`. */
function psql(url, sql) {
  return withTimeout(
    new Promise((resolve, reject) => {
      execFile('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', url, '-c', sql], (err, _stdout, stderr) => {
        if (err) {
          reject(new Error(`psql ${JSON.stringify(sql)} failed: ${err.message}\nstderr: ${stderr}`));
        } else {
          resolve();
        }
      });
    }),
    STEP_TIMEOUT_MS,
    `psql ${JSON.stringify(sql)}`,
  );
}

/**
 * The server's database URL: a fresh PostgreSQL database on the server of
 * TEST_DATABASE_URL when it is set (what the Rust tests do), else none (the embedded
 * SQLite file in the data directory).
 */
async function freshDatabase() {
  const admin = process.env.TEST_DATABASE_URL?.trim();
  if (!admin) {
    return undefined;
  }
  const name = `node_${randomToken(8)}`;
  await psql(admin, `CREATE DATABASE "${name}"`);
  server.postgres = { admin, name };
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Spawns `ordergraph serve` with `server.env`; resolves once the process has started. */
async function spawnServer() {
  server.exited = null;
  server.child = spawn(BIN, ['serve'], { env: server.env, stdio: ['ignore', 'pipe', 'pipe'] });
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
}

/**
 * Starts `ordergraph serve` on a free port and a fresh database, with `extraEnv` added to
 * its environment; resolves once it is ready.
 */
export async function startServer(extraEnv = {}) {
  server.port = await freePort();
  server.dataDir = await mkdtemp(path.join(os.tmpdir(), 'ordergraph-node-'));
  const env = {
    ...process.env,
    ORDERGRAPH_BIND: `127.0.0.1:${server.port}`,
    ORDERGRAPH_DATA_DIR: server.dataDir,
    ORDERGRAPH_JWT_SECRET: randomToken(24), // 48 characters
    NO_COLOR: '1', // plain log lines in failure messages
    ...extraEnv,
  };
  delete env.DATABASE_URL;
  const databaseUrl = await freshDatabase();
  if (databaseUrl) {
    env.DATABASE_URL = databaseUrl;
  }
  server.env = env;

  await spawnServer();
  await waitUntilReady();
  server.adminToken = await mintToken('node-admin', 'admin');
  server.aliceToken = await mintToken('node-alice', 'customer');
}

/**
 * Restarts the server as an operator would: SIGTERM (its subscriptions end with
 * SERVER_DRAINING), then the same binary again on the same port, database, data
 * directory and secret; resolves once it is ready. The tokens stay valid.
 */
export async function restartServer() {
  server.child.kill('SIGTERM');
  await withTimeout(server.exitPromise, 15_000, 'ordergraph to exit after SIGTERM');
  await spawnServer();
  await waitUntilReady();
}

export async function stopServer() {
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
  if (server.postgres) {
    const { admin, name } = server.postgres;
    server.postgres = null;
    await psql(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch((err) => {
      console.error(`kept the PostgreSQL database ${name}: ${err.message}`);
    });
  }
}

/** `it`, with the server's log tail added to a failure. */
export const scenario = (name, fn) =>
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

// ---------------------------------------------------------------------------------------
// GraphQL over HTTP

/** POST /graphql; GraphQL errors (or a non-2xx answer) fail with their messages. */
export async function gql(query, variables, token, what) {
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

