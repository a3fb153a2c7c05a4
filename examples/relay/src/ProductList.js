// The catalog as a Relay app pages it: a refetchable fragment on Query whose `products`
// connection is a Relay @connection, paged forwards (`loadNext`: first/after) and
// backwards (`loadPrevious`: last/before). relay-compiler checks that `products`, its
// edges and its PageInfo are what Relay's connection handling needs.
import { graphql } from 'react-relay';

export const productListFragment = graphql`
  fragment ProductList_query on Query
  @refetchable(queryName: "ProductListPaginationQuery")
  @argumentDefinitions(
    first: { type: "Int" }
    after: { type: "String" }
    last: { type: "Int" }
    before: { type: "String" }
    search: { type: "String" }
  ) {
    products(first: $first, after: $after, last: $last, before: $before, search: $search)
    @connection(key: "ProductList_products", filters: ["search"]) {
      totalCount
      edges {
        node {
          id
          ...ProductCard_product
        }
      }
    }
  }
`;

export const productListQuery = graphql`
  query ProductListQuery($first: Int, $search: String) {
    ...ProductList_query @arguments(first: $first, search: $search)
  }
`;
