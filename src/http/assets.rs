//! The files the binary's own pages load (GraphiQL at `/`, the console at `/console`),
//! embedded with `include_bytes!` and served under `/assets/`, so that both pages work on
//! a machine with no network beyond the API (ADR 0009, ADR 0015).
//!
//! Each asset's path names its version (a package's, for GraphiQL's vendored files; a
//! hash of the content, for the console's built ones), so a response may be cached for a
//! year (`immutable`: a new version is a new path); the pages themselves are revalidated
//! every time, so that a new binary's page names its new assets at once. Same-origin
//! scripts need no Subresource Integrity: whoever could change them could change the page
//! too. Gzip comes from the router's compression layer, for the clients that ask.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// A file a page loads, embedded in the binary.
pub(super) struct Asset {
    /// The URL path, under `/assets/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// `asset!("graphiql", "graphiql-4.1.2", "graphiql.min.js", "text/javascript")`: the file
/// `assets/graphiql/graphiql-4.1.2/graphiql.min.js`, served at
/// `/assets/graphiql-4.1.2/graphiql.min.js`: the folder under `assets/<page>/` is the
/// URL's first segment.
macro_rules! asset {
    ($page:literal, $folder:literal, $file:literal, $content_type:literal) => {
        $crate::http::assets::Asset {
            path: concat!($folder, "/", $file),
            content_type: concat!($content_type, "; charset=utf-8"),
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/",
                $page,
                "/",
                $folder,
                "/",
                $file
            )),
        }
    };
}
pub(super) use asset;

/// A year, the most RFC 9111 §5.2.2.1 suggests; `immutable` (RFC 8246) spares the
/// revalidation on reload.
const ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Every embedded asset, of every page.
fn all() -> impl Iterator<Item = &'static Asset> {
    super::graphiql::ASSETS
        .iter()
        .chain(super::console::ASSETS.iter())
}

/// The route of the assets (`/assets/…`).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{*path}", get(serve))
}

/// A page (`text/html`), revalidated on every load.
pub(super) fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

async fn serve(Path(path): Path<String>) -> Response {
    let Some(asset) = all().find(|a| a.path == path) else {
        return super::error_response(
            StatusCode::NOT_FOUND,
            crate::error::AppError::NotFound(
                "no such asset: the pages at / and /console name the ones there are".into(),
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

/// For the pages' tests: `page` loads exactly `assets` (its `src` and `href` values under
/// `/assets/`), and names no other origin.
#[cfg(test)]
pub(super) fn assert_loads_only(page: &str, assets: &[Asset]) {
    let mut loaded: Vec<&str> = page
        .split("/assets/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let mut served: Vec<&str> = assets.iter().map(|a| a.path).collect();
    loaded.sort_unstable();
    served.sort_unstable();
    assert_eq!(loaded, served, "the page loads {loaded:?}");
    assert!(
        !page.contains("://"),
        "the page names no other origin: {page}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_assets_share_a_path() {
        let mut paths: Vec<&str> = all().map(|a| a.path).collect();
        let count = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), count, "{paths:?}");
    }
}
