//! Which web origins may call the API from a browser: CORS for HTTP (the Fetch
//! standard's CORS protocol, answered by tower-http's `CorsLayer`) and the same list for
//! WebSocket upgrades, whose `Origin` a browser sends but which CORS does not cover
//! (RFC 6455 §10.2: the server must check it itself, or any page the user visits can
//! open a socket to the API: cross-site WebSocket hijacking).
//!
//! The default allows no other origin: GraphiQL, served by the API itself, and
//! non-browser clients (which send no `Origin`) work; a browser app on another origin
//! works once its origin is listed in `ORDERGRAPH_CORS_ORIGINS`.

use std::str::FromStr;
use std::time::Duration;

use axum::http::{HeaderMap, Method, header};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer (Chromium caps it at 2 hours).
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The origins allowed besides the API's own: a list of `scheme://host[:port]`, or any
/// (`*`). Parsed from `ORDERGRAPH_CORS_ORIGINS`, a comma-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    /// Lower-cased, as browsers serialise an origin (scheme and host are case-insensitive).
    origins: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "'{0}' is not an origin: write scheme://host[:port] (no path), several separated by commas, or *"
)]
pub struct InvalidOrigin(String);

impl FromStr for AllowedOrigins {
    type Err = InvalidOrigin;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut allowed = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                allowed.any = true;
                continue;
            }
            let origin = entry.trim_end_matches('/').to_ascii_lowercase();
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .ok_or_else(|| InvalidOrigin(entry.to_owned()))?;
            if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
                return Err(InvalidOrigin(entry.to_owned()));
            }
            allowed.origins.push(origin);
        }
        Ok(allowed)
    }
}

impl AllowedOrigins {
    /// Whether `origin` (an `Origin` header's value) is listed.
    fn lists(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The CORS layer: a preflight from a listed origin is answered with the methods
    /// GraphQL uses and whatever headers it asks for (clients add their own:
    /// `authorization`, `apollo-require-preflight`, …); a response to a listed origin
    /// carries `Access-Control-Allow-Origin`. Other origins get neither, so the browser
    /// keeps the response from the page. No credentials: the API authenticates with a
    /// bearer token, never a cookie.
    pub fn layer(&self) -> CorsLayer {
        let allow_origin = if self.any {
            AllowOrigin::any()
        } else {
            let allowed = self.clone();
            AllowOrigin::predicate(move |origin, _| {
                origin.to_str().is_ok_and(|origin| allowed.lists(origin))
            })
        };
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(AllowHeaders::mirror_request())
            .max_age(PREFLIGHT_MAX_AGE)
    }

    /// Whether a WebSocket upgrade with these headers may proceed: no `Origin` (not a
    /// browser), the API's own origin (its `Host`), or a listed one.
    pub fn allows_websocket(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let same_origin = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .zip(
                origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://")),
            )
            .is_some_and(|(host, authority)| authority.eq_ignore_ascii_case(host));
        same_origin || self.lists(origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn upgrade(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn origins_parse_from_a_comma_separated_list() {
        let allowed: AllowedOrigins = "https://App.example.com/, http://localhost:5173"
            .parse()
            .unwrap();
        assert!(allowed.lists("https://app.example.com"));
        assert!(allowed.lists("http://localhost:5173"));
        assert!(!allowed.lists("http://localhost:5174"));
        assert!(!allowed.lists("null"));
        assert_eq!(
            "".parse::<AllowedOrigins>().unwrap(),
            AllowedOrigins::default()
        );
        assert!(
            "*".parse::<AllowedOrigins>()
                .unwrap()
                .lists("https://any.where")
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
            "https://",
        ] {
            assert!(bad.parse::<AllowedOrigins>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_websocket_from_its_own_origin_or_a_listed_one_or_no_browser_is_allowed() {
        let allowed: AllowedOrigins = "http://app.example".parse().unwrap();
        let host = "api.example:8080";
        assert!(allowed.allows_websocket(&upgrade(None, host)));
        assert!(allowed.allows_websocket(&upgrade(Some("http://api.example:8080"), host)));
        assert!(allowed.allows_websocket(&upgrade(Some("https://API.example:8080"), host)));
        assert!(allowed.allows_websocket(&upgrade(Some("http://app.example"), host)));
        assert!(!allowed.allows_websocket(&upgrade(Some("http://evil.example"), host)));
        assert!(!allowed.allows_websocket(&upgrade(Some("http://api.example"), host)));
        assert!(!allowed.allows_websocket(&upgrade(Some("null"), host)));
        assert!(
            !AllowedOrigins::default().allows_websocket(&upgrade(Some("http://app.example"), host))
        );
    }
}
