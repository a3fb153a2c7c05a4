//! Black-box tests of the service: each test starts the real `Application` on port 0 over a
//! fresh database (SQLite, or PostgreSQL when `TEST_DATABASE_URL` is set) and talks to it
//! over HTTP like any client.

mod helpers;

mod audit;
mod auth;
mod cart;
mod cart_model;
mod catalog;
mod concurrency;
mod cors;
mod dashboard;
mod endpoints;
mod errors;
mod fuzz;
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
mod rebuild;
mod relay;
mod relay_graphql;
mod replicas;
mod reviews;
mod saga_isolation;
mod saga_recovery;
mod schema;
mod subscriptions;
mod wrong_kind_ids;
mod ws_client;
mod ws_protocol;
