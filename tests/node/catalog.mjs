// The catalog calls the client tests make over plain HTTP as the admin (the changes a
// subscription then has to deliver): create a product, adjust its stock.

import { gql, randomToken, server } from './harness.mjs';

/** A new product with `stock` units; resolves to `{ id, sku }`. */
export async function createProduct(stock, prefix = 'NODE') {
  const sku = `${prefix}-${randomToken(4).toUpperCase()}`;
  const data = await gql(
    'mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id sku } } }',
    { i: { sku, name: `${prefix} test product`, price: '4.50', initialStock: stock } },
    server.adminToken,
    `createProduct ${sku}`,
  );
  return data.createProduct.product;
}

/** Changes a product's stock by `delta`; resolves to the new stock. */
export async function adjustStock(productId, delta) {
  const data = await gql(
    'mutation($i: AdjustStockInput!) { adjustStock(input: $i) { product { stock } } }',
    { i: { productId, delta } },
    server.adminToken,
    `adjustStock(${delta})`,
  );
  return data.adjustStock.product.stock;
}
