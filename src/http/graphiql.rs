//! GraphiQL at `/`, served wholly by the binary: the page and the scripts and styles it
//! loads (GraphiQL 4's UMD bundle and React 18's production builds, vendored under
//! `assets/graphiql/` by its `refresh.sh`), so that it works on a machine with no network
//! beyond the API itself. ADR 0009 says why these builds and not GraphiQL 5's ESM.
//!
//! Each asset's path names its package's version, so a response may be cached for a year
//! (`immutable`: a new version is a new path); the page itself is revalidated every time,
//! so that a new binary's page names its new assets at once. Same-origin scripts need no
//! Subresource Integrity: whoever could change them could change the page too. Gzip comes
//! from the router's compression layer, for the clients that ask.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// A file the page loads, embedded in the binary.
struct Asset {
    /// The URL path, under `/assets/`.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// `asset!("graphiql-4.1.2", "graphiql.min.js", "text/javascript")`: the file
/// `assets/graphiql/graphiql-4.1.2/graphiql.min.js`, served at
/// `/assets/graphiql-4.1.2/graphiql.min.js`.
macro_rules! asset {
    ($folder:literal, $file:literal, $content_type:literal) => {
        Asset {
            path: concat!($folder, "/", $file),
            content_type: concat!($content_type, "; charset=utf-8"),
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/graphiql/",
                $folder,
                "/",
                $file
            )),
        }
    };
}

/// Every asset the page loads: `refresh.sh` vendors them, and their folders name the
/// versions (it removes a previous version's folder, so a stale path here fails to build).
const ASSETS: &[Asset] = &[
    asset!("graphiql-4.1.2", "graphiql.min.css", "text/css"),
    asset!("graphiql-4.1.2", "graphiql.min.js", "text/javascript"),
    asset!("react-18.3.1", "react.production.min.js", "text/javascript"),
    asset!(
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

/// A year, the most RFC 9111 §5.2.2.1 suggests; `immutable` (RFC 8246) spares the
/// revalidation on reload.
const ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// The routes of the page (`/`) and of its assets (`/assets/…`).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/assets/{*path}", get(asset))
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return super::error_response(
            StatusCode::NOT_FOUND,
            crate::error::AppError::NotFound(
                "no such asset: the GraphiQL page at / names the ones there are".into(),
            ),
        );
    };
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(ASSET_CACHE_CONTROL),
    );
    // The type above is the one a browser uses, never one it guesses from the bytes.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_every_asset_and_nothing_else() {
        let loaded: Vec<&str> = PAGE
            .split("/assets/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        let mut served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        let mut sorted = loaded.clone();
        sorted.sort_unstable();
        served.sort_unstable();
        assert_eq!(sorted, served, "the page loads {loaded:?}");
        assert!(
            !PAGE.contains("://"),
            "the page names no other origin: {PAGE}"
        );
    }
}
