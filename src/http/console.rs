//! The live console at `/console`: an admin's page of the shop and the machinery moving
//! (orders through the saga, the dashboard's figures, the projections, a product's stock
//! and price over time), fed by the public GraphQL API's subscriptions alone.
//!
//! Its sources are in `console/` (TypeScript and Preact, typed by graphql-codegen from
//! `schema.graphql`); `console/build.mjs` bundles them with esbuild into `assets/console/`,
//! checked in, and `.ci/run` rebuilds them and fails when the checked-in build differs
//! (ADR 0015). The build names each file by a hash of its content and writes the page and
//! the table below, so the binary embeds exactly the files the page loads, served by
//! `assets.rs` like GraphiQL's: nothing is fetched from anywhere else, so it works on a
//! machine with no network beyond the API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;

use super::assets::{Asset, asset};

/// The console's built files, named by content hash (written by `console/build.mjs`).
pub(super) const ASSETS: &[Asset] = &include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/console/assets.rs"
));

/// The page: the script and style of `ASSETS`, and nothing else.
const PAGE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/console/index.html"
));

/// What the page may load and connect to: its own origin only (CSP Level 3 lets `'self'`
/// match the origin's `ws:`/`wss:` too), no inline script, and no framing, since the page
/// holds an admin's token. The browser itself then refuses any request off the origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The route of the page (`/console`); its assets are served by `assets.rs`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/console", get(page))
}

async fn page() -> Response {
    let mut response = super::assets::page(PAGE);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // The token is in the page's sessionStorage: no other page may embed or read it.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_every_built_asset_and_nothing_else() {
        super::super::assets::assert_loads_only(PAGE, ASSETS);
        assert!(
            !PAGE.contains("<script>"),
            "no inline script, which the page's CSP would refuse: {PAGE}"
        );
    }
}
