//! Media types of GraphQL over HTTP (the GraphQL-over-HTTP draft, §"Media Types"): what a
//! request body may be (`application/json`), and which of the two response types a
//! client's `Accept` header asks for.
//!
//! The two response types differ in their status codes (see [`ResponseMedia`]), so the
//! choice is made here, once, for every response of the GraphQL endpoint. ADR 0005 has
//! the policy and why.

use axum::http::{HeaderMap, HeaderValue, header};

/// The media type of a GraphQL response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMedia {
    /// `application/json`, what every client understood before the spec: `200` for every
    /// well-formed request, request errors included, because an intermediary may replace
    /// a non-2xx `application/json` body with its own (§"application/json").
    Json,
    /// `application/graphql-response+json`: the status code says whether the request
    /// was executed; a request error (a syntax, validation or variable coercion error,
    /// nothing executed) is `400` with no `data` entry
    /// (§"application/graphql-response+json").
    GraphqlResponseJson,
}

impl ResponseMedia {
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            ResponseMedia::Json => "application/json; charset=utf-8",
            ResponseMedia::GraphqlResponseJson => {
                "application/graphql-response+json; charset=utf-8"
            }
        })
    }
}

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// The response type `headers` accept, `None` when they accept neither (a `406`).
///
/// No `Accept` header at all is `application/json` (§"Accept": the server SHOULD treat it
/// as such, for the clients that predate the spec). Otherwise each type takes the
/// quality of the most specific range that matches it (RFC 9110 §12.5.1), and the higher
/// quality wins. At equal quality, a type the client names beats one it reaches only
/// through a wildcard, and between two named ones the spec's own type wins (graphql-http,
/// urql and Apollo Client send `application/graphql-response+json, application/json`):
/// so `*/*` alone, what browsers and curl send, gets `application/json`.
pub fn response_media(headers: &HeaderMap) -> Option<ResponseMedia> {
    let mut values = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    if values.peek().is_none() {
        return Some(ResponseMedia::Json);
    }
    let ranges: Vec<Range<'_>> = values.flat_map(ranges).collect();
    if ranges.is_empty() {
        return Some(ResponseMedia::Json);
    }
    let json = preference(&ranges, JSON);
    let graphql = preference(&ranges, GRAPHQL_RESPONSE_JSON);
    match (graphql, json) {
        (None, None) => None,
        (Some(_), None) => Some(ResponseMedia::GraphqlResponseJson),
        (None, Some(_)) => Some(ResponseMedia::Json),
        (Some(g), Some(j)) if g.quality != j.quality => Some(if g.quality > j.quality {
            ResponseMedia::GraphqlResponseJson
        } else {
            ResponseMedia::Json
        }),
        (Some(g), Some(_)) if g.named => Some(ResponseMedia::GraphqlResponseJson),
        (Some(_), Some(_)) => Some(ResponseMedia::Json),
    }
}

/// Whether the `Accept` header allows a multipart response (Apollo's multipart
/// subscription protocol): any `multipart/mixed` range with a non-zero quality, whatever
/// its parameters. Apollo Client sends `multipart/mixed;boundary="graphql";subscriptionSpec=1.0`,
/// Apollo's protocol documentation also `multipart/mixed;subscriptionSpec="1.0"`, and urql
/// `text/event-stream, multipart/mixed`: the boundary is the server's to choose (RFC 2046
/// §5.1.1) and says so in its `Content-Type`.
pub fn accepts_multipart(headers: &HeaderMap) -> bool {
    accepts(headers, "multipart/mixed")
}

/// Whether the `Accept` header allows `text/event-stream` (GraphQL over Server-Sent
/// Events): graphql-sse's client asks for it alone, urql beside `multipart/mixed`.
pub fn accepts_event_stream(headers: &HeaderMap) -> bool {
    accepts(headers, "text/event-stream")
}

/// Whether `headers` name `media_type` with a non-zero quality, whatever its parameters.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(ranges)
        .any(|r| r.quality > 0 && r.media_type.eq_ignore_ascii_case(media_type))
}

/// Whether a request's `Content-Type` is one the GraphQL endpoint reads: `application/json`
/// (§"POST": the one media type a server MUST accept), in UTF-8 (§"Request": a request in
/// another encoding is refused). Anything else is a `415`: in particular no content type
/// or `text/plain`, which a browser may send to another origin without a CORS preflight,
/// so refusing them also closes the door to cross-site request forgery.
pub fn is_json_request(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case(JSON) {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

/// One media range of an `Accept` header.
#[derive(Debug)]
struct Range<'a> {
    media_type: &'a str,
    /// In thousandths (`q=0.9` is 900), as RFC 9110 §12.4.2 allows three decimals.
    quality: u16,
}

/// The media ranges of one `Accept` value; a range whose quality does not parse is
/// dropped, as if the client had not sent it.
fn ranges(value: &str) -> impl Iterator<Item = Range<'_>> {
    value.split(',').filter_map(|range| {
        let mut parts = range.split(';');
        let media_type = parts.next()?.trim();
        if media_type.is_empty() {
            return None;
        }
        let mut quality = 1000;
        for param in parts {
            if let Some((name, value)) = param.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = parse_quality(value.trim())?;
            }
        }
        Some(Range {
            media_type,
            quality,
        })
    })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_quality(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// How a client prefers one media type: the quality of the most specific range that
/// matches it, and whether that range names it.
#[derive(Debug, Clone, Copy)]
struct Preference {
    quality: u16,
    named: bool,
}

/// `None` when no range matches `media_type` or the best match has quality 0 (refused).
fn preference(ranges: &[Range<'_>], media_type: &str) -> Option<Preference> {
    let (main, _) = media_type.split_once('/')?;
    let specificity = |range: &Range<'_>| {
        let (range_main, range_sub) = range.media_type.split_once('/')?;
        if range.media_type.eq_ignore_ascii_case(media_type) {
            Some(3)
        } else if range_sub == "*" && range_main.eq_ignore_ascii_case(main) {
            Some(2)
        } else if range.media_type == "*/*" {
            Some(1)
        } else {
            None
        }
    };
    let (specificity, quality) = ranges
        .iter()
        .filter_map(|range| Some((specificity(range)?, range.quality)))
        // The most specific range decides; among equally specific ones, the best.
        .max()?;
    (quality > 0).then_some(Preference {
        quality,
        named: specificity == 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn each_accept_header_gets_the_media_type_the_spec_and_the_clients_expect() {
        use ResponseMedia::*;
        let cases: &[(&[&str], Option<ResponseMedia>)] = &[
            (&[], Some(Json)),
            (&["application/json"], Some(Json)),
            (&["*/*"], Some(Json)),
            (&["application/*"], Some(Json)),
            (&["text/html,application/xhtml+xml,*/*;q=0.8"], Some(Json)),
            (
                &["application/graphql-response+json"],
                Some(GraphqlResponseJson),
            ),
            // graphql-http's client, urql
            (
                &["application/graphql-response+json, application/json"],
                Some(GraphqlResponseJson),
            ),
            // Apollo Client
            (
                &["application/graphql-response+json,application/json;q=0.9"],
                Some(GraphqlResponseJson),
            ),
            (
                &["application/graphql-response+json;q=0.5, application/json"],
                Some(Json),
            ),
            (&["application/json, */*"], Some(Json)),
            (
                &["application/graphql-response+json, */*"],
                Some(GraphqlResponseJson),
            ),
            (
                &["*/*", "application/graphql-response+json"],
                Some(GraphqlResponseJson),
            ),
            (&["application/json;q=0, */*"], Some(GraphqlResponseJson)),
            (&["text/html"], None),
            (&["application/json;q=0"], None),
            (&["application/json;q=2, text/html"], None),
        ];
        for (values, expected) in cases {
            assert_eq!(
                response_media(&accept(values)),
                *expected,
                "Accept: {values:?}"
            );
        }
    }

    #[test]
    fn multipart_is_wanted_in_every_form_the_clients_send() {
        for value in [
            r#"multipart/mixed;boundary="graphql";subscriptionSpec="1.0",application/json"#,
            "multipart/mixed;subscriptionSpec=1.0, application/json",
            "multipart/mixed",
            "text/event-stream, multipart/mixed",
            "application/graphql-response+json, application/json, multipart/mixed;deferSpec=20220824",
        ] {
            assert!(accepts_multipart(&accept(&[value])), "{value}");
        }
        for value in ["application/json", "multipart/mixed;q=0", "*/*"] {
            assert!(!accepts_multipart(&accept(&[value])), "{value}");
        }
    }

    #[test]
    fn only_json_in_utf_8_is_a_request_body() {
        let content_type = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json_request(&headers)
        };
        assert!(content_type("application/json"));
        assert!(content_type("Application/JSON; charset=UTF-8"));
        assert!(content_type(r#"application/json;charset="utf-8""#));
        assert!(!content_type("application/json; charset=latin1"));
        assert!(!content_type("text/plain;charset=UTF-8"));
        assert!(!content_type("application/x-www-form-urlencoded"));
        assert!(!content_type("application/graphql"));
        assert!(!is_json_request(&HeaderMap::new()));
    }
}
