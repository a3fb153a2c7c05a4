//! GraphiQL at `/` is served wholly by the binary: the page, and every script and style it
//! loads from the same origin, each with its content type, a long cache lifetime and gzip
//! for the clients that ask. (That the page works, with no request leaving the origin, is
//! tested in a real browser: tests/node/graphiql.test.mjs.)

use std::io::Read as _;

use crate::helpers::*;

/// The `src` and `href` values of the page's `<script>` and `<link>` elements.
fn loaded_urls(page: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| page.split(attribute).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_graphiql_page_loads_only_assets_of_its_own_origin() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .expect("the request reaches the server");

    // Assert
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        header(&response, "content-type"),
        "text/html; charset=utf-8"
    );
    assert_eq!(header(&response, "cache-control"), "no-cache");
    let page = response.text().await.expect("a page");
    let urls = loaded_urls(&page);
    let assets: Vec<&String> = urls.iter().filter(|u| u.starts_with("/assets/")).collect();
    assert_eq!(
        assets.len(),
        4,
        "GraphiQL's script and style, React, ReactDOM: {urls:?}"
    );
    assert!(
        urls.iter()
            .all(|u| u.starts_with("/assets/") || u.starts_with("data:")),
        "every URL the page loads is this origin's: {urls:?}"
    );
    assert!(!page.contains("://"), "no absolute URL anywhere: {page}");
}

#[tokio::test]
async fn every_asset_of_the_graphiql_page_answers_200_with_its_type_and_a_long_cache_life() {
    // Arrange
    let app = spawn_app().await;
    let page = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .expect("the request reaches the server")
        .text()
        .await
        .expect("a page");

    for url in loaded_urls(&page)
        .iter()
        .filter(|u| u.starts_with("/assets/"))
    {
        // Act
        let response = app
            .http
            .get(app.url(url))
            .send()
            .await
            .expect("the request reaches the server");

        // Assert
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
        let expected_type = if url.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&response, "content-type"), expected_type, "{url}");
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let body = response.bytes().await.expect("a body");
        assert!(body.len() > 1000, "{url} has {} bytes", body.len());
        assert!(
            !body.starts_with(b"{\"errors\""),
            "{url} is the file, not an error"
        );
    }
}

#[tokio::test]
async fn graphiql_is_sent_gzipped_to_a_client_that_asks() {
    // Arrange
    let app = spawn_app().await;
    let url = "/assets/graphiql-4.1.2/graphiql.min.js";
    let plain = app
        .http
        .get(app.url(url))
        .send()
        .await
        .expect("the request reaches the server")
        .bytes()
        .await
        .expect("a body");

    // Act
    let response = app
        .http
        .get(app.url(url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("the request reaches the server");

    // Assert
    assert_eq!(header(&response, "content-encoding"), "gzip");
    let compressed = response.bytes().await.expect("a body");
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut unpacked)
        .expect("the body is gzip");
    assert_eq!(unpacked, plain, "the same file");
    assert!(
        compressed.len() * 3 < plain.len(),
        "{} bytes gzipped, {} plain",
        compressed.len(),
        plain.len()
    );
}

#[tokio::test]
async fn an_unknown_asset_is_a_404() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .http
        .get(app.url("/assets/graphiql-0.0.1/graphiql.min.js"))
        .send()
        .await
        .expect("the request reaches the server");

    // Assert
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_error(&body, "NOT_FOUND");
}
