//! Persisted queries: Apollo's automatic persisted queries (APQ), or, in production, an
//! allow-list of documents from a manifest (ADR 0010).
//!
//! A request names its document by hash in `extensions.persistedQuery`
//! (`{"version": 1, "sha256Hash": "<hex of the SHA-256 of the query text>"}`), with or
//! without the text:
//!
//! - **Automatic** (the default): a hash-only request runs the document registered under
//!   that hash, or fails with `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`,
//!   which is what Apollo Client's `PersistedQueryLink` looks for before it sends the
//!   text); a request with both registers the text once its hash checks and its document
//!   validates, so a junk document never takes room. The registry holds the query texts,
//!   least recently used evicted first, within a byte budget: hostile registrations cost
//!   memory up to that budget and no more.
//! - **Allow-list** (`ORDERGRAPH_PERSISTED_QUERIES=<manifest>`): only the manifest's
//!   documents run, named by hash or sent as text; nothing is registered. An unknown hash
//!   is `PERSISTED_QUERY_NOT_IN_LIST`, any other text `QUERY_NOT_IN_SAFELIST` (Apollo
//!   Router's codes for the same two refusals), both before the text is parsed.
//!
//! Resolving fills in the request's text and leaves `extensions.persistedQuery` in
//! place, so it can run twice: the HTTP transport resolves a request early, to see its
//! operation's type, and the schema's request pipeline (`pipeline.rs`) resolves every
//! request (batches and WebSocket subscriptions included) on its way to execution. A resolved document then
//! goes through the document limits (`limits.rs`) like any other.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use async_graphql::{Request, ServerResult};
use sha2::{Digest, Sha256};

/// The request extension that carries the hash (Apollo's APQ protocol).
const EXTENSION: &str = "persistedQuery";
/// The message Apollo clients match, besides the code, to send the text again.
const NOT_FOUND_MESSAGE: &str = "PersistedQueryNotFound";

/// The persisted queries of one server: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct PersistedQueries {
    mode: Arc<Mode>,
}

enum Mode {
    Automatic(Mutex<Registry>),
    AllowList(HashMap<String, Arc<str>>),
}

/// Registered query texts by hash, least recently used first, within a byte budget.
struct Registry {
    texts: hashlink::LruCache<String, Arc<str>>,
    bytes: usize,
    max_bytes: usize,
}

impl PersistedQueries {
    /// Automatic persisted queries, registering documents within `max_bytes` of text (0:
    /// none; every hash-only request is then answered `PERSISTED_QUERY_NOT_FOUND`, and
    /// clients send the text each time).
    pub fn automatic(max_bytes: usize) -> Self {
        Self {
            mode: Arc::new(Mode::Automatic(Mutex::new(Registry {
                texts: hashlink::LruCache::new_unbounded(),
                bytes: 0,
                max_bytes,
            }))),
        }
    }

    /// Only the documents of the manifest at `path` run. Two formats are read: Apollo's
    /// (`@apollo/generate-persisted-query-manifest`: `{"format":
    /// "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "body",
    /// …}]}`), and a plain `{"<sha256 hex>": "<document>"}` map.
    pub fn allow_list(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the persisted query manifest {}", path.display()))?;
        Self::from_manifest(&text)
            .with_context(|| format!("the persisted query manifest {}", path.display()))
    }

    fn from_manifest(text: &str) -> anyhow::Result<Self> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Manifest {
            Apollo {
                format: String,
                version: u32,
                operations: Vec<Operation>,
            },
            Map(HashMap<String, String>),
        }
        #[derive(serde::Deserialize)]
        struct Operation {
            id: String,
            body: String,
        }
        let manifest: Manifest = serde_json::from_str(text).context(
            "not an Apollo persisted query manifest, nor a JSON object of SHA-256 hashes to documents",
        )?;
        let mut documents = HashMap::new();
        match manifest {
            Manifest::Apollo {
                format,
                version,
                operations,
            } => {
                anyhow::ensure!(
                    format == "apollo-persisted-query-manifest" && version == 1,
                    "format {format:?} version {version}: only apollo-persisted-query-manifest version 1 is known"
                );
                for op in operations {
                    let body: Arc<str> = op.body.into();
                    // A client may name it by the manifest's id (Apollo's persisted query
                    // lists) or by the SHA-256 of its text (APQ): both resolve.
                    documents.insert(sha256_hex(&body), body.clone());
                    documents.insert(op.id, body);
                }
            }
            Manifest::Map(map) => {
                for (hash, body) in map {
                    let actual = sha256_hex(&body);
                    anyhow::ensure!(
                        hash.eq_ignore_ascii_case(&actual),
                        "the document under {hash} has the SHA-256 {actual}"
                    );
                    documents.insert(actual, body.into());
                }
            }
        }
        Ok(Self {
            mode: Arc::new(Mode::AllowList(documents)),
        })
    }

    /// The request with its document's text, or the error that refuses it; and the hash
    /// under which to register the text once its document validates (automatic mode).
    pub fn resolve(&self, mut request: Request) -> ServerResult<(Request, Option<String>)> {
        let hash = requested_hash(&request)?;
        match (&*self.mode, hash) {
            (Mode::Automatic(_), None) => Ok((request, None)),
            (Mode::Automatic(registry), Some(hash)) if request.query.is_empty() => {
                let mut registry = locked(registry);
                let text = registry.texts.get(&hash).ok_or_else(|| {
                    coded(NOT_FOUND_MESSAGE.to_owned(), "PERSISTED_QUERY_NOT_FOUND")
                })?;
                request.query = text.to_string();
                Ok((request, Some(hash)))
            }
            (Mode::Automatic(_), Some(hash)) => {
                check_hash(&request.query, &hash)?;
                Ok((request, Some(hash)))
            }
            (Mode::AllowList(documents), Some(hash)) if request.query.is_empty() => {
                let text = documents.get(&hash).ok_or_else(|| {
                    coded(
                        format!("no persisted query has the id {hash}: this server only runs the operations of its manifest"),
                        "PERSISTED_QUERY_NOT_IN_LIST",
                    )
                })?;
                request.query = text.to_string();
                Ok((request, None))
            }
            (Mode::AllowList(documents), hash) => {
                if let Some(hash) = &hash {
                    check_hash(&request.query, hash)?;
                }
                if !documents.contains_key(&sha256_hex(&request.query)) {
                    return Err(coded(
                        "this server only runs the operations of its persisted query manifest, and this document is not one of them".to_owned(),
                        "QUERY_NOT_IN_SAFELIST",
                    ));
                }
                Ok((request, None))
            }
        }
    }

    /// Registers `text` under `hash` (automatic mode), evicting the least recently used
    /// texts until the registry fits its budget again.
    fn register(&self, hash: String, text: &str) {
        let Mode::Automatic(registry) = &*self.mode else {
            return;
        };
        let mut registry = locked(registry);
        let cost = hash.len() + text.len();
        if cost > registry.max_bytes || registry.texts.contains_key(&hash) {
            // Known already (a hash-only request, or a client that sends both each time):
            // `get` in `resolve` has refreshed it. Too large: never fits.
            return;
        }
        while registry.bytes + cost > registry.max_bytes {
            match registry.texts.remove_lru() {
                Some((old, text)) => registry.bytes -= old.len() + text.len(),
                None => break,
            }
        }
        registry.bytes += cost;
        registry.texts.insert(hash, text.into());
    }

    /// Texts registered, and their size in bytes (hashes included).
    pub fn registered(&self) -> (usize, usize) {
        match &*self.mode {
            Mode::Automatic(registry) => {
                let registry = locked(registry);
                (registry.texts.len(), registry.bytes)
            }
            Mode::AllowList(_) => (0, 0),
        }
    }
}

/// The hash in `extensions.persistedQuery`, lower case; none without the extension.
fn requested_hash(request: &Request) -> ServerResult<Option<String>> {
    #[derive(serde::Deserialize)]
    struct PersistedQuery {
        version: i64,
        #[serde(rename = "sha256Hash")]
        sha256_hash: String,
    }
    let Some(value) = request.extensions.get(EXTENSION) else {
        return Ok(None);
    };
    let persisted: PersistedQuery = async_graphql::from_value(value.clone()).map_err(|_| {
        coded(
            "extensions.persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<SHA-256 of the query, in hex>\"}".to_owned(),
            "BAD_USER_INPUT",
        )
    })?;
    if persisted.version != 1 {
        return Err(coded(
            format!(
                "persisted query version {} is not supported: only version 1 is",
                persisted.version
            ),
            "PERSISTED_QUERY_NOT_SUPPORTED",
        ));
    }
    let hash = persisted.sha256_hash.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(coded(
            "extensions.persistedQuery.sha256Hash must be a SHA-256 in hex (64 digits)".to_owned(),
            "BAD_USER_INPUT",
        ));
    }
    Ok(Some(hash))
}

/// Refuses a text sent with a hash that is not its own: registering it would make the
/// hash run another document for every client.
fn check_hash(query: &str, hash: &str) -> ServerResult<()> {
    if sha256_hex(query) != hash {
        return Err(coded(
            "provided sha does not match query: sha256Hash must be the SHA-256 of the query text, in hex".to_owned(),
            "BAD_USER_INPUT",
        ));
    }
    Ok(())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

use super::error::request_error as coded;

impl PersistedQueries {
    /// The persisted-query step of one request (of the request pipeline, `pipeline.rs`).
    pub(super) fn for_request(&self) -> Resolving {
        Resolving {
            queries: self.clone(),
            registration: Mutex::new(None),
        }
    }
}

/// The persisted-query step of one request: resolves it, and registers its text once it
/// validated.
pub(super) struct Resolving {
    queries: PersistedQueries,
    registration: Mutex<Option<(String, String)>>,
}

impl Resolving {
    /// The request with its document's text, or the error that refuses it.
    pub(super) fn prepare(&self, request: Request) -> ServerResult<Request> {
        let (request, hash) = self.queries.resolve(request)?;
        if let Some(hash) = hash {
            *locked(&self.registration) = Some((hash, request.query.clone()));
        }
        Ok(request)
    }

    /// The request's document validated: its text is registered (automatic mode).
    pub(super) fn validated(&self) {
        let registration = locked(&self.registration).take();
        if let Some((hash, text)) = registration {
            self.queries.register(hash, &text);
        }
    }
}

/// Takes a lock of this module, poisoned or not, as every use here always did: nothing in
/// a critical section here panics but an allocation, and the worst a half-done update of
/// the registry could leave is a byte count off by one document, a cache's budget.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use async_graphql::ServerError;

    use super::*;

    fn with_hash(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        request.extensions.insert(
            EXTENSION.to_owned(),
            async_graphql::Value::from_json(
                serde_json::json!({ "version": 1, "sha256Hash": hash }),
            )
            .unwrap(),
        );
        request
    }

    fn code(error: &ServerError) -> String {
        crate::graphql::error::code_of(error)
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_text_in_lower_case_hex() {
        // What `printf "{ __typename }" | sha256sum` prints, as Apollo Client computes it.
        assert_eq!(
            sha256_hex("{ __typename }"),
            "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b"
        );
    }

    #[test]
    fn a_registered_text_is_found_by_its_hash_and_an_unknown_hash_is_not() {
        let queries = PersistedQueries::automatic(1024);
        let hash = sha256_hex("{ a }");
        let err = queries.resolve(with_hash("", &hash)).unwrap_err();
        assert_eq!(
            (err.message.as_str(), code(&err).as_str()),
            (NOT_FOUND_MESSAGE, "PERSISTED_QUERY_NOT_FOUND")
        );

        let (_, registration) = queries.resolve(with_hash("{ a }", &hash)).unwrap();
        queries.register(registration.unwrap(), "{ a }");
        let (request, _) = queries
            .resolve(with_hash("", &hash.to_uppercase()))
            .unwrap();
        assert_eq!(request.query, "{ a }");
    }

    #[test]
    fn a_text_with_another_texts_hash_is_refused() {
        let queries = PersistedQueries::automatic(1024);
        let err = queries
            .resolve(with_hash("{ b }", &sha256_hex("{ a }")))
            .unwrap_err();
        assert_eq!(code(&err), "BAD_USER_INPUT");
        let err = queries.resolve(with_hash("{ b }", "abc")).unwrap_err();
        assert_eq!(code(&err), "BAD_USER_INPUT");
    }

    #[test]
    fn the_registry_evicts_the_least_recently_used_text_to_stay_within_its_budget() {
        // Room for two entries of 64 + 5 bytes.
        let queries = PersistedQueries::automatic(2 * 69 + 10);
        let texts = ["{ a1}", "{ a2}", "{ a3}"];
        let hashes: Vec<String> = texts.iter().map(|t| sha256_hex(t)).collect();
        queries.register(hashes[0].clone(), texts[0]);
        queries.register(hashes[1].clone(), texts[1]);
        // Using the first makes the second the least recently used.
        queries.resolve(with_hash("", &hashes[0])).unwrap();
        queries.register(hashes[2].clone(), texts[2]);

        let (count, bytes) = queries.registered();
        assert!(count == 2 && bytes <= 2 * 69 + 10, "{count} {bytes}");
        assert!(queries.resolve(with_hash("", &hashes[0])).is_ok());
        assert!(queries.resolve(with_hash("", &hashes[1])).is_err());
        assert!(queries.resolve(with_hash("", &hashes[2])).is_ok());
        // A text larger than the whole budget is not registered, and evicts nothing.
        let huge = "{ x }".repeat(100);
        queries.register(sha256_hex(&huge), &huge);
        assert_eq!(queries.registered().0, 2);
    }

    #[test]
    fn an_allow_list_runs_its_documents_only() {
        let listed = "query Listed { __typename }";
        let manifest = serde_json::json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": "custom-id", "name": "Listed", "type": "query", "body": listed }]
        });
        let queries = PersistedQueries::from_manifest(&manifest.to_string()).unwrap();

        let (by_hash, registration) = queries.resolve(with_hash("", &sha256_hex(listed))).unwrap();
        assert_eq!((by_hash.query.as_str(), registration), (listed, None));
        assert_eq!(
            queries.resolve(Request::new(listed)).unwrap().0.query,
            listed
        );

        let err = queries.resolve(Request::new("{ __typename }")).unwrap_err();
        assert_eq!(code(&err), "QUERY_NOT_IN_SAFELIST");
        let err = queries
            .resolve(with_hash("", &sha256_hex("{ __typename }")))
            .unwrap_err();
        assert_eq!(code(&err), "PERSISTED_QUERY_NOT_IN_LIST");
    }

    #[test]
    fn a_plain_manifest_must_name_each_document_by_its_hash() {
        let good = serde_json::json!({ sha256_hex("{ a }"): "{ a }" });
        assert!(PersistedQueries::from_manifest(&good.to_string()).is_ok());
        let bad = serde_json::json!({ sha256_hex("{ a }"): "{ b }" });
        assert!(PersistedQueries::from_manifest(&bad.to_string()).is_err());
        let other =
            serde_json::json!({ "format": "something-else", "version": 1, "operations": [] });
        assert!(PersistedQueries::from_manifest(&other.to_string()).is_err());
    }
}
