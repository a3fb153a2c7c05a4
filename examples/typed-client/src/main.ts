// A typed client of ordergraph: every operation below is typed by graphql-codegen from
// schema.graphql (codegen.ts at the repository's root), so a misspelt field, a wrong
// variable or a scalar used as the wrong type fails `tsc --strict`, not a user.
//
// It creates a product as an admin, reads it back, and watches its stock change over
// GraphQL over Server-Sent Events (the `graphql-sse` client), checking each answer; any
// mismatch exits non-zero. Against a running server:
//
//   ORDERGRAPH_URL=http://127.0.0.1:8080 ORDERGRAPH_ADMIN_TOKEN=$(ordergraph token --sub admin --role admin) \
//     node dist/main.js

import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';

import { print } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { createClient } from 'graphql-sse';

import { graphql } from './gql/index.js';

const CreateProduct = graphql(`
  mutation CreateProduct($input: CreateProductInput!) {
    createProduct(input: $input) {
      position
      product { id sku price stock }
    }
  }
`);

const ProductById = graphql(`
  query ProductById($id: UUID!) {
    product(id: $id) { id sku name price stock inStock status updatedAt position }
  }
`);

const AdjustStock = graphql(`
  mutation AdjustStock($input: AdjustStockInput!) {
    adjustStock(input: $input) { position product { stock } }
  }
`);

const WatchStock = graphql(`
  subscription WatchStock($ids: [UUID!]) {
    productUpdated(ids: $ids) { id stock position }
  }
`);

function setting(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

const url = `${setting('ORDERGRAPH_URL')}/graphql`;
const headers = { authorization: `Bearer ${setting('ORDERGRAPH_ADMIN_TOKEN')}` };

/** One operation over HTTP: its typed data, or an error with the GraphQL errors. */
async function request<Data, Variables>(
  document: TypedDocumentNode<Data, Variables>,
  variables: Variables,
): Promise<Data> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({ query: print(document), variables }),
  });
  const body = (await response.json()) as { data?: Data | null; errors?: { message: string }[] };
  if (body.errors?.length || body.data == null) {
    throw new Error(`HTTP ${response.status}: ${JSON.stringify(body.errors ?? body)}`);
  }
  return body.data;
}

/** Positions are strings of digits that may exceed 2^53: compared as BigInt. */
function isAfter(later: string, earlier: string): boolean {
  return BigInt(later) > BigInt(earlier);
}

// Create, as an admin: `price` is a Decimal, a string in TypeScript as in JSON.
const sku = `TYPED-${randomUUID().slice(0, 8).toUpperCase()}`;
const created = await request(CreateProduct, {
  input: { sku, name: 'Typed client', price: '12.50', initialStock: 4 },
});
const product = created.createProduct.product;
assert.equal(product.sku, sku);
assert.equal(product.price, '12.50');
console.log(`created ${product.sku} (${product.id}) at position ${created.createProduct.position}`);

// Read it back: `updatedAt` is a DateTime, an RFC 3339 string.
const read = await request(ProductById, { id: product.id });
assert.ok(read.product, 'the product is found');
assert.equal(read.product.stock, 4);
assert.equal(read.product.status, 'ACTIVE');
assert.ok(!Number.isNaN(new Date(read.product.updatedAt).getTime()), read.product.updatedAt);
console.log(`read ${read.product.name}: ${read.product.stock} in stock, updated ${read.product.updatedAt}`);

// Watch it over SSE: the current state first, then the change made below.
const client = createClient({ url, headers, singleConnection: false, retryAttempts: 0 });
const updates = client.iterate<{ productUpdated: { id: string; stock: number; position: string } }>({
  query: print(WatchStock),
  variables: { ids: [product.id] },
});
const seen: number[] = [];
let lastPosition = '0';
for await (const result of updates) {
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  const update = result.data?.productUpdated;
  assert.ok(update, JSON.stringify(result));
  assert.ok(isAfter(update.position, lastPosition), `${update.position} after ${lastPosition}`);
  lastPosition = update.position;
  seen.push(update.stock);
  console.log(`stock of ${sku} is ${update.stock} at position ${update.position}`);
  if (seen.length === 1) {
    const adjusted = await request(AdjustStock, { input: { productId: product.id, delta: 3 } });
    assert.equal(adjusted.adjustStock.product.stock, 7);
  } else {
    break; // ends the subscription: the client closes its request
  }
}
client.dispose();
assert.deepEqual(seen, [4, 7]);
console.log('typed client: all checks passed');
