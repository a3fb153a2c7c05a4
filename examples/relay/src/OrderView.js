// An order fetched by its global id, as a Relay route loader would.
import { graphql } from 'react-relay';

export const orderViewQuery = graphql`
  query OrderViewQuery($id: ID!) {
    node(id: $id) {
      ... on Order {
        id
        status
        total
        lines {
          sku
          quantity
        }
      }
    }
  }
`;
