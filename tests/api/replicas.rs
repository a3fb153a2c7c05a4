//! Several processes on one database: they start together, each applying the pending
//! migrations at most once between them, and every one of them serves.

use ordergraph::config::Settings;

use crate::helpers::*;

#[tokio::test]
async fn three_replicas_started_at_once_on_an_empty_database_all_come_up() {
    // Arrange: one fresh, empty database and three servers' settings for it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (database_url, _database) = fresh_database_url(dir.path()).await;
    let settings = |i: usize| Settings {
        bind: "127.0.0.1:0".parse().expect("an address"),
        database_url: Some(database_url.clone()),
        data_dir: dir.path().join(format!("replica-{i}")),
        jwt_secret: Some(secrecy::SecretString::from(JWT_SECRET.to_string())),
        ..Settings::default()
    };

    // Act: build (connect, migrate, bind) all three at the same moment, several times.
    for _ in 0..3 {
        let (a, b, c) = tokio::join!(
            ordergraph::Application::build(settings(0)),
            ordergraph::Application::build(settings(1)),
            ordergraph::Application::build(settings(2)),
        );

        // Assert: none of them failed in its migrations.
        for (i, built) in [a, b, c].into_iter().enumerate() {
            if let Err(e) = built {
                panic!("replica {i} did not start: {e:#}");
            }
        }
    }
}
