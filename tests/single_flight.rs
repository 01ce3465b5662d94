//! The resolver against a real Postgres: concurrent misses of one code make one query, and
//! errors are not cached.

mod common;

use std::sync::Arc;
use std::time::Duration;

use shortener::clicks::ClickRecorder;
use shortener::ids::{CodeCodec, CodeKey};
use shortener::links::{CacheSettings, LinkCache, ResolveError, Resolver};
use shortener::storage::{Db, PoolSettings, PoolSizes};

const CONCURRENT: usize = 50;

fn resolver(db: &Db) -> Arc<Resolver> {
    let cache = Arc::new(LinkCache::new(CacheSettings {
        capacity: 1_000,
        ttl: Duration::from_secs(3600),
        negative_ttl: Duration::from_secs(3600),
    }));
    let codec = CodeCodec::new(&CodeKey::derive(b"single-flight test key"));
    Arc::new(Resolver::new(
        cache,
        db.clone(),
        codec,
        Arc::new(ClickRecorder::new()),
        Duration::from_secs(5),
    ))
}

fn pool_settings() -> PoolSettings {
    PoolSettings {
        sizes: PoolSizes {
            read: 8,
            write: 1,
            background: 1,
        },
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    }
}

/// Starts `CONCURRENT` resolves of `code` while `links` is locked, so that every one of them
/// is waiting before the first lookup can finish; answers their results once unlocked.
async fn resolve_concurrently(
    resolver: &Arc<Resolver>,
    db_url: &str,
    code: &str,
) -> Vec<Result<i64, ResolveError>> {
    let mut locker = common::connect(db_url).await;
    let watcher = common::connect(db_url).await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE links IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (resolver, code) = (Arc::clone(resolver), code.to_owned());
            tokio::spawn(async move {
                resolver
                    .resolve(&common::code(&code))
                    .await
                    .map(|link| link.id)
            })
        })
        .collect();
    // The first lookup has reached Postgres and waits there on the lock.
    let blocked = common::eventually(Duration::from_secs(10), || async {
        common::waiting_on_a_lock(&watcher, "%FROM links%").await > 0
    })
    .await;
    assert!(blocked, "no lookup waited on the locked table");
    assert!(
        tasks.iter().all(|task| !task.is_finished()),
        "a resolve finished while the table was locked"
    );
    lock.rollback().await.unwrap();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_code_make_one_query() {
    let db_url = common::fresh_database().await;
    let admin = common::connect(&db_url).await;
    admin
        .execute(
            "INSERT INTO links (id, code, target_url, created_at) \
             VALUES (7, 'popular', 'https://example.com/', now())",
            &[],
        )
        .await
        .unwrap();
    let mut db = Db::connect_lazy(&common::target(&db_url), &[], &pool_settings());
    let metrics = common::metrics();
    db.count_in(metrics.db.clone());
    let lookups = || common::db_operations(&metrics, "lookup_primary");
    let resolver = resolver(&db);

    let results = resolve_concurrently(&resolver, &db_url, "popular").await;
    assert!(
        results.iter().all(|result| matches!(result, Ok(7))),
        "{results:?}"
    );
    assert_eq!(lookups(), 1, "{CONCURRENT} misses, one query");
    // Hits from then on.
    for _ in 0..10 {
        let link = resolver.resolve(&common::code("popular")).await.unwrap();
        assert_eq!(link.id, 7);
    }
    assert_eq!(lookups(), 1);

    // Unknown codes: concurrent misses share one query too, and the answer is remembered.
    let results = resolve_concurrently(&resolver, &db_url, "nobody-has-it").await;
    assert!(
        results
            .iter()
            .all(|result| matches!(result, Err(ResolveError::NotFound))),
        "{results:?}"
    );
    assert_eq!(lookups(), 2);
    for _ in 0..10 {
        assert!(matches!(
            resolver.resolve(&common::code("nobody-has-it")).await,
            Err(ResolveError::NotFound)
        ));
    }
    assert_eq!(lookups(), 2, "the negative entry answers");
}

#[tokio::test]
async fn failed_lookups_are_not_cached() {
    let mut db = Db::connect_lazy(
        &common::target("postgres://postgres@127.0.0.1:1/none"),
        &[],
        &{
            let mut settings = pool_settings();
            settings.acquire_timeout = Duration::from_millis(200);
            settings
        },
    );
    let metrics = common::metrics();
    db.count_in(metrics.db.clone());
    let resolver = resolver(&db);
    for attempt in 1..=3 {
        assert!(matches!(
            resolver.resolve(&common::code("anything")).await,
            Err(ResolveError::Unavailable(_))
        ));
        assert_eq!(
            common::db_operations(&metrics, "lookup_primary"),
            attempt,
            "each miss asks again"
        );
    }
}
