// Automatic persisted queries with the real Apollo Client and its PersistedQueryLink
// (ADR 0010): the first client's hash-only request is answered PERSISTED_QUERY_NOT_FOUND,
// the link falls back to sending the text, which registers it; a second client (a fresh
// cache and link, as another browser) then runs the same operation by its hash alone —
// over GET, as a CDN would cache it.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph node --test persisted-queries.test.mjs

import { createHash } from 'node:crypto';
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { ApolloClient, HttpLink, InMemoryCache, gql as parse } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

import { STEP_TIMEOUT_MS, gql, scenario, server, show, startServer, stopServer, withTimeout } from './harness.mjs';

const SKUS = parse`
  query Skus($first: Int!) {
    products(first: $first) { edges { node { sku } } }
  }
`;

/** An Apollo client with its own cache and link, recording every request it sends. */
function apolloClient() {
  const sent = [];
  const recordingFetch = async (input, init = {}) => {
    const url = new URL(String(input));
    const body = init.body ? JSON.parse(init.body) : null;
    const extensions = body?.extensions ?? JSON.parse(url.searchParams.get('extensions') ?? 'null');
    const response = await fetch(input, init);
    sent.push({
      method: init.method ?? 'GET',
      withText: Boolean(body?.query || url.searchParams.get('query')),
      hash: extensions?.persistedQuery?.sha256Hash,
      status: response.status,
    });
    return response;
  };
  const link = new PersistedQueryLink({
    sha256: (text) => createHash('sha256').update(text).digest('hex'),
    useGETForHashedQueries: true,
  }).concat(new HttpLink({ uri: `${server.httpUrl}/graphql`, fetch: recordingFetch }));
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  return { client, sent };
}

describe('automatic persisted queries with Apollo Client', () => {
  before(startServer);
  after(stopServer);

  scenario('PERSISTED_QUERY_NOT_FOUND makes the link send the text; the hash alone then suffices', async () => {
    await gql(
      'mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }',
      { i: { sku: 'APQ-NODE', name: 'Persisted', price: '1.00', initialStock: 1 } },
      server.adminToken,
      'createProduct',
    );

    const first = apolloClient();
    const result = await withTimeout(
      first.client.query({ query: SKUS, variables: { first: 5 } }),
      STEP_TIMEOUT_MS,
      'the first client’s query',
    );
    assert.deepEqual(result.data.products.edges.map((e) => e.node.sku), ['APQ-NODE'], show(result));
    assert.equal(first.sent.length, 2, `a hash-only try, then the text: ${show(first.sent)}`);
    const [unknown, registering] = first.sent;
    assert.deepEqual(
      [unknown.method, unknown.withText, unknown.status],
      ['GET', false, 400],
      `the hash alone, over GET, is not found: ${show(first.sent)}`,
    );
    assert.deepEqual(
      [registering.method, registering.withText, registering.hash, registering.status],
      ['POST', true, unknown.hash, 200],
      `the fallback sends the text with its hash: ${show(first.sent)}`,
    );

    const second = apolloClient();
    const again = await withTimeout(
      second.client.query({ query: SKUS, variables: { first: 5 } }),
      STEP_TIMEOUT_MS,
      'the second client’s query',
    );
    assert.deepEqual(again.data, result.data);
    assert.deepEqual(
      second.sent.map((r) => [r.method, r.withText, r.hash, r.status]),
      [['GET', false, unknown.hash, 200]],
      `one GET with the hash alone: ${show(second.sent)}`,
    );
  });
});
