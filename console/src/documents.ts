// Every operation the console runs, typed by graphql-codegen against schema.graphql
// (`npm run codegen` writes ./gql). The console uses the public API only: what it shows,
// any client can show the same way.

import { graphql } from './gql/index.js';

/** Checks a token: an admin's reads the dashboard; anyone else's is refused with a code. */
export const WhoAmI = graphql(`
  query ConsoleWhoAmI {
    dashboard {
      position
    }
  }
`);

export const DashboardUpdated = graphql(`
  subscription ConsoleDashboard($after: Position) {
    dashboardUpdated(after: $after) {
      ordersByStatus {
        status
        count
      }
      revenue
      ordersToday
      lowStock(threshold: 5) {
        id
        sku
        name
        stock
      }
      position
    }
  }
`);

export const RecentOrders = graphql(`
  query ConsoleRecentOrders($first: Int!) {
    orders(first: $first) {
      edges {
        node {
          ...ConsoleOrder
        }
      }
    }
  }
`);

export const OrderFields = graphql(`
  fragment ConsoleOrder on Order {
    id
    userId
    status
    total
    reservation
    payment
    reason
    placedAt
    updatedAt
    position
    lines {
      productId
      sku
      name
      quantity
      unitPrice
      lineTotal
    }
  }
`);

export const OrderUpdated = graphql(`
  subscription ConsoleOrders($after: Position) {
    orderUpdated(after: $after) {
      ...ConsoleOrder
    }
  }
`);

export const OrderHistory = graphql(`
  query ConsoleOrderHistory($id: UUID!) {
    history(streamId: $id, first: 100) {
      edges {
        node {
          position
          version
          type
          data
          metadata
          recordedAt
        }
      }
    }
  }
`);

export const ProjectionsUpdated = graphql(`
  subscription ConsoleProjections {
    projectionsUpdated {
      name
      position
      head
      lag
      lagMillis
      status
      error
      failedPosition
      updatedAt
    }
  }
`);

export const VerifyProjection = graphql(`
  mutation ConsoleVerify($name: String!) {
    verifyProjection(name: $name) {
      name
      ok
      position
      rows
      differences
      elapsedMillis
    }
  }
`);

export const RebuildProjection = graphql(`
  mutation ConsoleRebuild($name: String!) {
    rebuildProjection(name: $name) {
      ...ConsoleRebuildProgress
    }
  }
`);

export const RebuildProgressFields = graphql(`
  fragment ConsoleRebuildProgress on RebuildProgress {
    name
    phase
    eventsDone
    eventsTotal
    eventsPerSecond
    position
    elapsedMillis
    rows
    error
  }
`);

export const RebuildProgress = graphql(`
  subscription ConsoleRebuildProgress($name: String!) {
    rebuildProgress(name: $name) {
      ...ConsoleRebuildProgress
    }
  }
`);

export const Products = graphql(`
  query ConsoleProducts {
    products(first: 100, includeDiscontinued: true) {
      edges {
        node {
          id
          sku
          name
        }
      }
    }
  }
`);

export const ProductTimeline = graphql(`
  query ConsoleProductTimeline($id: UUID!) {
    productTimeline(id: $id, last: 50) {
      version
      eventType
      recordedAt
      position
      price
      stock
    }
  }
`);

export const ProductUpdated = graphql(`
  subscription ConsoleProduct($id: UUID!, $after: Position) {
    productUpdated(ids: [$id], after: $after) {
      id
      sku
      name
      price
      stock
      version
      position
    }
  }
`);

export const ClusterUpdated = graphql(`
  subscription ConsoleCluster {
    clusterUpdated {
      node
      nodes {
        id
        roles
        since
        alive
        unitsHeld
        serving {
          position
          lag
          reportedAt
        }
      }
      units {
        name
        holder
        since
      }
    }
  }
`);
