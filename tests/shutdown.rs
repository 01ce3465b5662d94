//! One shutdown tree: when `run_until_stopped` returns, every task the service started has
//! ended — its listeners and connections, its background loops, the Redis fill-backs, the
//! drivers' own tasks (bb8's reapers and connection tasks, fred's connection task) — so the
//! runtime's count of alive tasks is back where it was before the service was built.

mod common;

use std::time::Duration;

use common::{
    eventually, fresh_database, redis_cluster_nodes, redis_single_url, send, unique_redis_prefix,
};
use shortener::Application;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn every_task_has_ended_when_run_until_stopped_returns() {
    every_task_ends(&["--redis-url", &redis_single_url()]).await;
}

#[tokio::test]
async fn every_task_has_ended_with_a_redis_cluster_too() {
    every_task_ends(&["--redis-cluster-nodes", &redis_cluster_nodes()]).await;
}

/// Builds the service with `redis`, serves a few requests, stops it, and counts the tasks.
async fn every_task_ends(redis: &[&str]) {
    let db_url = fresh_database().await;
    let prefix = unique_redis_prefix();
    let mut flags = vec!["--redis-key-prefix", &prefix];
    flags.extend_from_slice(redis);
    let config = common::config(&db_url, &flags);
    let before = alive_tasks();
    let application = Application::build(config)
        .await
        .expect("the service builds");
    let (addr, stop) = (application.local_addr(), application.stop_token());
    let mut during = 0;
    let client = async {
        // A create (the writer, the Redis write-through), a miss that reads Postgres and fills
        // Redis back in the background, and the keep-alive connection of each request.
        let created = send(
            addr,
            "POST",
            "/shorten",
            &[("Content-Type", "application/json")],
            br#"{"url": "https://example.com/tasks", "alias": "tasks-alias"}"#,
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text());
        assert_eq!(
            send(addr, "GET", "/no-such-code", &[], b"").await.status,
            404
        );
        assert_eq!(
            send(addr, "GET", "/tasks-alias", &[], b"").await.status,
            302
        );
        during = alive_tasks();
        stop.cancel();
    };
    // The service runs in this very task: only what it spawned is counted.
    let (stopped, ()) = tokio::join!(application.run_until_stopped(), client);
    stopped.expect("the service stops cleanly");
    eprintln!("alive tasks: {before} before, {during} while serving");
    assert!(
        during > before + 5,
        "the count sees the service's tasks ({before} before, {during} while serving)"
    );
    let back = eventually(Duration::from_secs(1), || async { alive_tasks() <= before }).await;
    assert!(
        back,
        "{} tasks alive 1 s after the stop; {before} before the start",
        alive_tasks()
    );
}
