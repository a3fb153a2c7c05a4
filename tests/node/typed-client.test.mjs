// The sample typed client (examples/typed-client: TypeScript, its operations typed by
// graphql-codegen from schema.graphql) run against the server: it creates a product as
// an admin, reads it back and watches its stock over GraphQL over SSE, and exits
// non-zero on any mismatch. `.ci/run` generates and compiles it (`tsc --strict`) first.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph node --test typed-client.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { STEP_TIMEOUT_MS, scenario, server, startServer, stopServer, withTimeout } from './harness.mjs';

const CLIENT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'typed-client');
const MAIN = path.join(CLIENT, 'dist', 'main.js');

describe('the sample typed client', () => {
  before(async () => {
    await access(MAIN).catch(() => {
      throw new Error(`${MAIN} is missing: build it first (cd examples/typed-client && npm ci && npm run codegen && npm run build)`);
    });
    await startServer();
  });
  after(async () => {
    await stopServer();
  });

  scenario('creates a product as an admin, reads it back and watches its stock change', async () => {
    const run = new Promise((resolve) => {
      execFile(
        process.execPath,
        [MAIN],
        {
          cwd: CLIENT,
          env: { ...process.env, ORDERGRAPH_URL: server.httpUrl, ORDERGRAPH_ADMIN_TOKEN: server.adminToken },
        },
        (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr }),
      );
    });
    const { code, stdout, stderr } = await withTimeout(run, 3 * STEP_TIMEOUT_MS, 'the typed client to finish');
    const transcript = `stdout:\n${stdout}\nstderr:\n${stderr}`;
    assert.equal(code, 0, transcript);
    assert.match(stdout, /^created TYPED-/m, transcript);
    assert.match(stdout, /: 4 in stock, updated \d{4}-\d\d-\d\dT/, transcript);
    assert.match(stdout, /stock of TYPED-\w+ is 7 at position \d+/, transcript);
    assert.match(stdout, /typed client: all checks passed/, transcript);
  });
});
