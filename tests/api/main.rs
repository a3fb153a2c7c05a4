//! Black-box tests of the service: each test starts the real `Application` on port 0 over a
//! fresh database (SQLite, or PostgreSQL when `TEST_DATABASE_URL` is set) and talks to it
//! over HTTP like any client.

mod helpers;

mod audit;
mod auth;
mod bus;
mod cart;
mod cart_model;
mod catalog;
mod cluster;
mod cluster_live;
mod concurrency;
mod console;
mod cors;
mod dashboard;
mod doorbells;
mod endpoints;
mod errors;
mod fuzz;
mod graphiql;
mod graphql_over_http;
mod http;
mod idempotency;
mod limits;
mod listing;
mod metrics_export;
mod multipart;
mod order_saga;
mod orders;
mod persisted_queries;
mod private_pg;
mod projections_live;
mod read_cache;
mod rebuild;
mod relay;
mod relay_graphql;
mod replicas;
mod reviews;
mod saga_isolation;
mod saga_recovery;
mod schema;
mod search;
mod shared_subscriptions;
mod sleeping_subscriptions;
mod sse;
mod streamed;
mod subscriptions;
mod supervision;
mod traces;
mod wrong_kind_ids;
mod ws_client;
mod ws_protocol;

/// Every file of this directory is a module of this binary: a test file left out of the
/// list above would never be compiled, and nothing else would say so.
#[test]
fn every_file_of_the_directory_is_a_module_of_the_test_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let main = std::fs::read_to_string(dir.join("main.rs")).expect("tests/api/main.rs");
    for entry in std::fs::read_dir(&dir).expect("tests/api is a directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if name != "main" {
            let declared = format!("mod {name};");
            assert!(
                main.lines().any(|line| line.trim() == declared),
                "tests/api/{name}.rs is not declared in tests/api/main.rs: it never runs"
            );
        }
    }
}
