// GraphQL over HTTP as the reference implementation checks it: every one of graphql-http's
// `serverAudits` (the GraphQL-over-HTTP draft's MUSTs, SHOULDs and MAYs, version pinned in
// package-lock.json) against the real server, each audit a test of its own. Not only the
// errors fail: a warning (a SHOULD) or a notice (a MAY) fails too.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph node --test http-audit.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { serverAudits } from 'graphql-http';

import { STEP_TIMEOUT_MS, scenario, server, startServer, stopServer } from './harness.mjs';

/** Every fetch of the audits, bounded: a hung server fails the audit, not the whole run. */
const boundedFetch = (input, init = {}) => fetch(input, { ...init, signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });

describe('graphql-http server audits', () => {
  before(startServer);
  after(stopServer);

  const audits = serverAudits({ url: () => `${server.httpUrl}/graphql`, fetchFn: boundedFetch });
  for (const audit of audits) {
    scenario(`${audit.id} ${audit.name}`, async () => {
      const result = await audit.fn();
      if (result.status !== 'ok') {
        const { response } = result;
        const headers = response ? [...response.headers].map(([k, v]) => `${k}: ${v}`).join('\n  ') : '';
        const body = response && !response.bodyUsed ? await response.text().catch(() => '') : '(read by the audit)';
        assert.fail(
          `${result.status}: ${result.reason}\n` +
            (response ? `response: HTTP ${response.status}\n  ${headers}\n${body.slice(0, 600)}` : ''),
        );
      }
    });
  }
});
