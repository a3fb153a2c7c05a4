//! The console at `/console` is served wholly by the binary: the page, with a policy
//! that lets it load and connect to its own origin only, and the built script and
//! stylesheet it names, each with its type and a year's cache life. (That the page works,
//! live, with no request leaving the origin, is tested in Chromium:
//! tests/node/console.test.mjs.)

use crate::helpers::*;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The `src` and `href` values of the page's elements.
fn loaded_urls(page: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| page.split(attribute).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_console_page_loads_its_script_and_style_from_its_own_origin_only() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .http
        .get(app.url("/console"))
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
    let policy = header(&response, "content-security-policy").to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(header(&response, "x-frame-options"), "DENY");
    let page = response.text().await.expect("a page");
    let urls = loaded_urls(&page);
    let assets: Vec<&String> = urls.iter().filter(|u| u.starts_with("/assets/")).collect();
    assert_eq!(assets.len(), 2, "one script, one stylesheet: {urls:?}");
    assert!(
        urls.iter()
            .all(|u| u.starts_with("/assets/console/") || u.starts_with("data:")),
        "every URL the page loads is this origin's: {urls:?}"
    );
    assert!(!page.contains("://"), "no absolute URL anywhere: {page}");
}

#[tokio::test]
async fn every_asset_of_the_console_answers_200_with_its_type_and_a_long_cache_life() {
    // Arrange
    let app = spawn_app().await;
    let page = app
        .http
        .get(app.url("/console"))
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
        let expected = if url.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&response, "content-type"), expected, "{url}");
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let body = response.bytes().await.expect("a body");
        assert!(
            body.len() > 1000,
            "{url} is the built file: {} bytes",
            body.len()
        );
    }

    // A name the build never wrote is a GraphQL-shaped 404.
    let missing = app
        .http
        .get(app.url("/assets/console/console-NOTBUILT.js"))
        .send()
        .await
        .expect("the request reaches the server");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let body: serde_json::Value = missing.json().await.expect("JSON");
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
}
