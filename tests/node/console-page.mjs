// What the console's browser tests share (console.test.mjs in Chromium,
// console-firefox.test.mjs in Firefox): orders placed through the API, the cluster as the
// API answers it, the bound the issue sets, and where the screenshots go.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { gql, server } from './harness.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DATABASE = process.env.TEST_DATABASE_URL?.trim() ? 'postgres' : 'sqlite';

/** The bound: an order placed through the API is CONFIRMED on the page within it. */
export const CONFIRMED_WITHIN_MS = 1_000;

/** Where a test's screenshots go: target/node-tests/<name>-<database>/, or CONSOLE_SCREENSHOTS. */
export function screenshotsDir(name) {
  return path.resolve(process.env.CONSOLE_SCREENSHOTS || path.join(REPO, 'target', 'node-tests', `${name}-${DATABASE}`));
}

/** Alice's cart: `quantity` of `productId`, then checkout; resolves to the order's id. */
export async function placeOrder(productId, quantity, paymentToken) {
  await gql(
    'mutation($i: CartItemInput!) { addToCart(input: $i) { cart { itemCount } } }',
    { i: { productId, quantity } },
    server.aliceToken,
    'addToCart',
  );
  const data = await gql(
    'mutation($i: CheckoutInput!) { checkout(input: $i) { order { id status } } }',
    { i: { paymentToken, shippingAddress: '1 Console Way' } },
    server.aliceToken,
    `checkout with ${paymentToken}`,
  );
  return data.checkout.order.id;
}

/** The admin `cluster` query: the answering node, the replicas, every unit's holder. */
export async function clusterNow() {
  return (
    await gql(
      '{ cluster { node nodes { id alive unitsHeld } units { name holder } } }',
      {},
      server.adminToken,
      'cluster',
    )
  ).cluster;
}

/**
 * Reads the cluster panel in the page, its replicas and its units as the data attributes
 * say, in one look (two would see two states when one arrives between them): for
 * `$eval('section.cluster', readClusterPanel)` of Playwright or Puppeteer.
 */
export const readClusterPanel = (section) => ({
  replicas: [...section.querySelectorAll('tr[data-replica]')].map((row) => ({
    id: row.dataset.replica,
    alive: row.dataset.alive === 'true',
    units: Number(row.dataset.units),
  })),
  units: [...section.querySelectorAll('tr[data-unit]')].map((row) => ({
    name: row.dataset.unit,
    holder: row.dataset.holder || null,
    moved: row.dataset.moved ?? null,
  })),
});
