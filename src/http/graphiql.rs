//! GraphiQL at `/`, served wholly by the binary: the page and the scripts and styles it
//! loads (GraphiQL 4's UMD bundle and React 18's production builds, vendored under
//! `assets/graphiql/` by its `refresh.sh`), so that it works on a machine with no network
//! beyond the API itself. ADR 0009 says why these builds and not GraphiQL 5's ESM.
//!
//! Each asset's path names its package's version; `assets.rs` serves them (cached for a
//! year, as a new version is a new path) and the console's beside them.

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::assets::{Asset, asset};

/// Every asset the page loads: `refresh.sh` vendors them, and their folders name the
/// versions (it removes a previous version's folder, so a stale path here fails to build).
pub(super) const ASSETS: &[Asset] = &[
    asset!("graphiql", "graphiql-4.1.2", "graphiql.min.css", "text/css"),
    asset!(
        "graphiql",
        "graphiql-4.1.2",
        "graphiql.min.js",
        "text/javascript"
    ),
    asset!(
        "graphiql",
        "react-18.3.1",
        "react.production.min.js",
        "text/javascript"
    ),
    asset!(
        "graphiql",
        "react-dom-18.3.1",
        "react-dom.production.min.js",
        "text/javascript"
    ),
];

/// The page. Queries and mutations go over HTTP to `/graphql` and subscriptions over a
/// `graphql-transport-ws` WebSocket to `/graphql` (the same path, upgraded): GraphiQL's
/// fetcher sends what its Headers tab holds as HTTP headers, and as the WebSocket's
/// `connection_init` payload, where `Authorization` is read too (see `ws.rs`).
/// Incremental delivery is off: the server has no `@defer`, and the plain fetcher asks
/// for JSON only. The icon is an empty `data:` URL, so the browser asks for no
/// `/favicon.ico`.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>ordergraph · GraphiQL</title>
    <link rel="icon" href="data:,">
    <style>
      body { height: 100%; margin: 0; width: 100%; overflow: hidden; }
      #graphiql { height: 100vh; }
    </style>
    <link rel="stylesheet" href="/assets/graphiql-4.1.2/graphiql.min.css">
    <script src="/assets/react-18.3.1/react.production.min.js"></script>
    <script src="/assets/react-dom-18.3.1/react-dom.production.min.js"></script>
    <script src="/assets/graphiql-4.1.2/graphiql.min.js"></script>
  </head>
  <body>
    <div id="graphiql">Loading…</div>
    <script>
      const subscriptionUrl = new URL('/graphql', window.location.href);
      subscriptionUrl.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
      ReactDOM.createRoot(document.getElementById('graphiql')).render(
        React.createElement(GraphiQL, {
          fetcher: GraphiQL.createFetcher({
            url: new URL('/graphql', window.location.href).toString(),
            subscriptionUrl: subscriptionUrl.toString(),
            enableIncrementalDelivery: false,
          }),
          defaultEditorToolsVisibility: true,
        }),
      );
    </script>
  </body>
</html>
"#;

/// The route of the page (`/`); its assets are served by `assets.rs`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(page))
}

async fn page() -> Response {
    super::assets::page(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_every_asset_and_nothing_else() {
        super::super::assets::assert_loads_only(PAGE, ASSETS);
    }
}
