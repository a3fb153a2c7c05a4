// One product, refetchable on its own: relay-compiler generates the refetch query as
// `node(id: $id) { ...ProductCard_product }`, which needs Product to implement the
// Node interface (its id field is `nodeId`, see relay.config.json).
import { graphql } from 'react-relay';

export const productCardFragment = graphql`
  fragment ProductCard_product on Product @refetchable(queryName: "ProductCardRefetchQuery") {
    sku
    name
    price
    stock
    averageRating
  }
`;
