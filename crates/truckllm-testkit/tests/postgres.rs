//! The PostgreSQL harness itself: a real server starts (as the `postgres` user when root),
//! answers, survives a stop and start with its data, and hands out separate databases.

use truckllm_testkit::PostgresServer;

#[test]
fn a_server_keeps_its_data_across_a_stop_and_start() {
    let mut server = PostgresServer::start();
    server.psql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");
    server.stop();
    server.restart();
    assert_eq!(server.psql("SELECT v FROM kept"), "42");
    assert_eq!(server.psql("SHOW port"), server.port().to_string());
}

#[test]
fn fresh_databases_are_distinct_and_empty() {
    let server = PostgresServer::shared();
    let a = server.fresh_database();
    let b = server.fresh_database();
    assert_ne!(a, b);
    let name = a.rsplit('/').next().expect("database name");
    assert_eq!(
        server.psql_in(
            name,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
}
