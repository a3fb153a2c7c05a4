// Subscriptions over plain HTTP with the real clients that use them: Apollo Client's
// HttpLink (Apollo's multipart subscription protocol), urql's `fetchSubscriptions`
// (multipart, as it also offers `text/event-stream`) and the `graphql-sse` client in its
// distinct connections mode (`Accept: text/event-stream` alone).
//
// Each message must reach the client as it happens, not when the next one pushes it out:
// the server runs with no heartbeat for an hour, and each change is made only once the
// client has shown the previous one, so a message held back until the next would time
// the test out.
//
//   ORDERGRAPH_BIN=/path/to/ordergraph node --test http-subscriptions.test.mjs

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { ApolloClient, HttpLink, InMemoryCache, gql as apolloGql } from '@apollo/client';
import { Client as UrqlClient, fetchExchange } from '@urql/core';
import { createClient as createSseClient } from 'graphql-sse';

import { adjustStock, createProduct } from './catalog.mjs';
import { STEP_TIMEOUT_MS, scenario, server, show, startServer, stopServer, withTimeout } from './harness.mjs';

const PRODUCT_UPDATED = `subscription Watch($ids: [UUID!]) {
  productUpdated(ids: $ids) { id stock }
}`;
const CART_UPDATED = 'subscription MyCart { cartUpdated { userId itemCount } }';

/**
 * What one subscription received, in order, and a way to wait for a result. `start` is
 * given `{ next, error, complete }` callbacks and returns a function that stops it.
 */
function feed(client, start) {
  const results = [];
  const waiters = [];
  let failure = null;
  let completed = false;
  const wake = () => {
    for (const waiter of [...waiters]) {
      waiter();
    }
  };
  const stop = start({
    next: (result) => {
      results.push(result);
      wake();
    },
    error: (err) => {
      failure = err;
      wake();
    },
    complete: () => {
      completed = true;
      wake();
    },
  });
  return {
    results,
    stop,
    /** Waits for the first result after the `seen` first ones for which `accept` holds. */
    async waitFor(accept, what, seen = 0) {
      const found = () => results.slice(seen).find(accept);
      const settled = new Promise((resolve, reject) => {
        const check = () => {
          if (found()) {
            resolve(found());
          } else if (failure) {
            reject(new Error(`${client}: the subscription failed: ${show(failure)}`));
          } else if (completed) {
            reject(new Error(`${client}: the subscription completed early`));
          } else {
            return false;
          }
          waiters.splice(waiters.indexOf(check), 1);
          return true;
        };
        waiters.push(check);
        check();
      });
      return withTimeout(settled, STEP_TIMEOUT_MS, `${client} to deliver ${what}`, () => `received: ${show(results, 2000)}`);
    },
  };
}

// ---------------------------------------------------------------------------------------
// The three clients, each as `subscribe(query, variables, token, callbacks) -> stop`

function apollo(query, variables, token, { next, error, complete }) {
  const client = new ApolloClient({
    link: new HttpLink({
      uri: `${server.httpUrl}/graphql`,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    }),
    cache: new InMemoryCache(),
  });
  const subscription = client.subscribe({ query: apolloGql(query), variables }).subscribe({
    next: (result) => (result.error ? error(result.error) : next(result.data)),
    error,
    complete,
  });
  return () => {
    subscription.unsubscribe();
    client.stop();
  };
}

/** urql's results have no completion callback: its subscriptions here never end. */
function urql(query, variables, token, { next, error }) {
  const client = new UrqlClient({
    url: `${server.httpUrl}/graphql`,
    exchanges: [fetchExchange],
    fetchSubscriptions: true,
    fetchOptions: token ? { headers: { authorization: `Bearer ${token}` } } : {},
  });
  const { unsubscribe } = client.subscription(query, variables).subscribe((result) => {
    if (result.error) {
      error(result.error);
    } else if (result.data) {
      next(result.data);
    }
  });
  return unsubscribe;
}

function graphqlSse(query, variables, token, { next, error, complete }) {
  const client = createSseClient({
    url: `${server.httpUrl}/graphql`,
    singleConnection: false, // distinct connections mode: one request per operation
    headers: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: 0,
  });
  const unsubscribe = client.subscribe(
    { query, variables },
    {
      next: (result) => (result.errors ? error(result.errors) : next(result.data)),
      error,
      complete,
    },
  );
  return () => {
    unsubscribe();
    client.dispose();
  };
}

const CLIENTS = {
  "Apollo Client's HttpLink (multipart)": apollo,
  "urql's fetchSubscriptions (multipart)": urql,
  'graphql-sse (distinct connections)': graphqlSse,
};

// ---------------------------------------------------------------------------------------

describe('subscriptions over HTTP with the clients that use them', () => {
  before(async () => {
    // No heartbeat for an hour: only the message itself can reach the client.
    await startServer({ ORDERGRAPH_MULTIPART_HEARTBEAT_MS: '3600000' });
  });
  after(async () => {
    await stopServer();
  });

  for (const [client, subscribe] of Object.entries(CLIENTS)) {
    scenario(`${client}: each change arrives as it happens`, async () => {
      const product = await createProduct(5, 'HTTPSUB');
      const stockIs = (stock) => (data) => data?.productUpdated?.stock === stock;
      const watch = feed(client, (callbacks) => subscribe(PRODUCT_UPDATED, { ids: [product.id] }, null, callbacks));
      try {
        // The current state comes first, with nothing after it to push it out.
        await watch.waitFor(stockIs(5), 'the current state (stock 5)');
        for (const [delta, stock] of [
          [2, 7],
          [-4, 3],
        ]) {
          const seen = watch.results.length;
          assert.equal(await adjustStock(product.id, delta), stock);
          await watch.waitFor(stockIs(stock), `stock ${stock}`, seen);
        }
        assert.deepEqual(
          watch.results.map((data) => data.productUpdated.stock),
          [5, 7, 3],
          'each change once, in order',
        );
        assert.ok(
          watch.results.every((data) => data.productUpdated.id === product.id),
          show(watch.results),
        );
      } finally {
        watch.stop();
      }
    });

    scenario(`${client}: a signed-in subscription sees the caller's own data`, async () => {
      const watch = feed(client, (callbacks) => subscribe(CART_UPDATED, {}, server.aliceToken, callbacks));
      try {
        const cart = await watch.waitFor((data) => data?.cartUpdated, "alice's cart");
        assert.equal(cart.cartUpdated.userId, 'node-alice', show(cart));
      } finally {
        watch.stop();
      }
    });
  }
});
