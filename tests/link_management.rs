//! Link management: `PATCH /{code}` and `DELETE /{code}` by the link's owner or an admin key,
//! their preconditions (`If-Match`), who may do what, deletes that are final, codes matched
//! exactly, and changes reaching every instance (three of them, on one Redis node and on a
//! Redis Cluster, and without Redis through the feed in Postgres), and never undone by a fill
//! that read the link before the change and lands after it.

mod common;

use std::time::Duration;

use common::redis::{Topology, redis_get, spawn_with_redis, store_settings};
use common::{TestApp, eventually, make_key, scalar, send, spawn_app, spawn_app_on};

/// What the contract promises while the subscription to changes is up.
const CHANGES_REACH_EVERY_INSTANCE: Duration = Duration::from_secs(1);

async fn create_keyed(app: &TestApp, key: &str, body: serde_json::Value) -> String {
    let response = app.keyed("POST", "/shorten", key, &body.to_string()).await;
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()["code"].as_str().unwrap().to_owned()
}

async fn patch(
    app: &TestApp,
    key: &str,
    code: &str,
    body: serde_json::Value,
) -> common::TestResponse {
    app.keyed("PATCH", &format!("/{code}"), key, &body.to_string())
        .await
}

/// What `GET /{code}` answers on `app`: the `Location` of a redirect, or the status.
async fn served(app: &TestApp, code: &str) -> Result<String, u16> {
    let response = app.get(&format!("/{code}")).await;
    match response.header("location") {
        Some(location) if response.status == 302 => Ok(location.to_owned()),
        _ => Err(response.status),
    }
}

/// Whether every instance answers `want` for `code` within the contract's second.
async fn every_instance_serves(apps: &[TestApp], code: &str, want: Result<&str, u16>) -> bool {
    let want = want.map(str::to_owned);
    eventually(CHANGES_REACH_EVERY_INSTANCE, || {
        let want = want.clone();
        async move {
            for app in apps {
                if served(app, code).await != want {
                    return false;
                }
            }
            true
        }
    })
    .await
}

async fn changes_reach_three_instances(topology: Topology) {
    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    // A cache TTL far longer than the bound: only the change reaching them can explain it.
    let extra = ["--cache-ttl", "60s"];
    let apps = [
        spawn_with_redis(&db_url, topology, &prefix, &extra).await,
        spawn_with_redis(&db_url, topology, &prefix, &extra).await,
        spawn_with_redis(&db_url, topology, &prefix, &extra).await,
    ];
    let key = make_key(&db_url, "owner", "links");
    let code = create_keyed(
        &apps[0],
        &key,
        serde_json::json!({"url": "https://example.com/before"}),
    )
    .await;
    // Every instance holds the first version in memory.
    for app in &apps {
        assert_eq!(
            served(app, &code).await,
            Ok("https://example.com/before".into())
        );
    }

    let edited = patch(
        &apps[0],
        &key,
        &code,
        serde_json::json!({"url": "https://example.com/after"}),
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.text());
    assert_eq!(edited.header("etag"), Some("\"2\""));
    assert_eq!(edited.json()["etag"], "\"2\"");
    assert_eq!(edited.json()["url"], "https://example.com/after");
    assert!(
        every_instance_serves(&apps, &code, Ok("https://example.com/after")).await,
        "{topology:?}: an edit made on the first instance"
    );

    // Changes made on the others travel the same way.
    let disabled = patch(&apps[1], &key, &code, serde_json::json!({"disabled": true})).await;
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_eq!(disabled.json()["disabled"], true);
    assert!(
        every_instance_serves(&apps, &code, Err(410)).await,
        "{topology:?}: a disable made on the second instance"
    );
    let enabled = patch(
        &apps[2],
        &key,
        &code,
        serde_json::json!({"disabled": false}),
    )
    .await;
    assert_eq!(enabled.header("etag"), Some("\"4\""), "{}", enabled.text());
    assert!(
        every_instance_serves(&apps, &code, Ok("https://example.com/after")).await,
        "{topology:?}: an enable made on the third instance"
    );

    assert_eq!(
        apps[2]
            .keyed("DELETE", &format!("/{code}"), &key, "")
            .await
            .status,
        204
    );
    assert!(
        every_instance_serves(&apps, &code, Err(410)).await,
        "{topology:?}: a delete made on the third instance"
    );
    for app in &apps {
        app.get(&format!("/{code}/stats")).await.assert_problem(410);
    }

    // A fresh instance reads the newest version from Redis: the change reached that tier too.
    let fresh = spawn_with_redis(&db_url, topology, &prefix, &extra).await;
    assert_eq!(served(&fresh, &code).await, Err(410));
    let scrape = fresh.scrape().await;
    assert_eq!(
        scrape.value("shortener_link_resolutions_total", &[("outcome", "redis")]),
        1.0,
        "answered by Redis, not Postgres"
    );
    fresh.shutdown().await;
    for app in apps {
        app.shutdown().await;
    }
}

#[tokio::test]
async fn changes_reach_every_instance_within_a_second_on_a_single_redis() {
    changes_reach_three_instances(Topology::Single).await;
}

#[tokio::test]
async fn changes_reach_every_instance_within_a_second_on_a_redis_cluster() {
    changes_reach_three_instances(Topology::Cluster).await;
}

/// A fill that read a link before its `DELETE` and lands after it brings nothing back, on
/// three instances. The race is made to happen in that order: the fill is the instances' own
/// (`RemoteCache::fill`, the background write after a Postgres hit), given the link as a
/// lookup read it before the delete, and run to completion after the delete has reached every
/// instance.
async fn a_late_fill_does_not_undo_a_delete(topology: Topology) {
    use std::sync::Arc;

    use shortener::links::RemoteCache;
    use shortener::storage::{LinkRecord, RedisStore};
    use tokio_util::task::TaskTracker;

    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    let extra = ["--cache-ttl", "60s"];
    let apps = [
        spawn_with_redis(&db_url, topology, &prefix, &extra).await,
        spawn_with_redis(&db_url, topology, &prefix, &extra).await,
        spawn_with_redis(&db_url, topology, &prefix, &extra).await,
    ];
    let key = make_key(&db_url, "owner", "links");
    let code = create_keyed(
        &apps[0],
        &key,
        serde_json::json!({"url": "https://example.com/before"}),
    )
    .await;
    for app in &apps {
        assert_eq!(
            served(app, &code).await,
            Ok("https://example.com/before".into())
        );
    }
    // The fill begins: a lookup reads the link from Postgres, before the delete.
    let row = apps[0]
        .db()
        .await
        .query_one(
            "SELECT id, created_at, version FROM links WHERE code = $1",
            &[&code],
        )
        .await
        .unwrap();
    let read_before = LinkRecord::new(
        row.get(0),
        code.clone(),
        "https://example.com/before".into(),
        row.get(1),
    );
    assert_eq!(read_before.version, row.get::<_, i64>(2));

    // The delete, on another instance, reaches every instance and Redis.
    let deleted = apps[1].keyed("DELETE", &format!("/{code}"), &key, "").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(every_instance_serves(&apps, &code, Err(410)).await);
    let redis_key = format!("{prefix}{code}");
    assert!(redis_get(topology, &redis_key).is_some_and(|held| held.starts_with("v2\n")));

    // The fill lands, and the same fill lands for a code Redis does not hold (it could
    // have written).
    let fills = TaskTracker::new();
    let store = RedisStore::connect(&store_settings(topology, &prefix), fills.clone()).unwrap();
    assert!(store.wait_connected(Duration::from_secs(5)).await);
    let remote = Arc::new(RemoteCache::new(
        store,
        Duration::from_secs(30),
        fills.clone(),
    ));
    let control = format!("{code}-control");
    remote.fill(&code, &read_before);
    remote.fill(&control, &read_before);
    fills.close();
    fills.wait().await;
    assert!(
        redis_get(topology, &format!("{prefix}{control}"))
            .is_some_and(|held| held.starts_with("v1\n")),
        "the fill did not land"
    );
    assert!(
        redis_get(topology, &redis_key).is_some_and(|held| held.starts_with("v2\n")),
        "{topology:?}: the late fill replaced the delete in Redis"
    );
    for app in &apps {
        assert_eq!(served(app, &code).await, Err(410));
    }
    // A fresh instance, reading Redis first, finds the delete.
    let fresh = spawn_with_redis(&db_url, topology, &prefix, &extra).await;
    assert_eq!(served(&fresh, &code).await, Err(410));
    assert_eq!(
        fresh
            .scrape()
            .await
            .value("shortener_link_resolutions_total", &[("outcome", "redis")]),
        1.0
    );
    fresh.shutdown().await;
    for app in apps {
        app.shutdown().await;
    }
}

#[tokio::test]
async fn a_fill_that_read_before_a_delete_and_lands_after_it_brings_nothing_back_on_a_single_redis()
{
    a_late_fill_does_not_undo_a_delete(Topology::Single).await;
}

#[tokio::test]
async fn a_fill_that_read_before_a_delete_and_lands_after_it_brings_nothing_back_on_a_redis_cluster()
 {
    a_late_fill_does_not_undo_a_delete(Topology::Cluster).await;
}

#[tokio::test]
async fn without_redis_the_feed_in_postgres_carries_a_change_to_every_instance() {
    let db_url = common::fresh_database().await;
    let extra = ["--cache-ttl", "60s"];
    let apps = [
        spawn_app_on(&db_url, &extra).await,
        spawn_app_on(&db_url, &extra).await,
    ];
    let key = make_key(&db_url, "owner", "links");
    let code = create_keyed(
        &apps[0],
        &key,
        serde_json::json!({"url": "https://example.com/v1"}),
    )
    .await;
    for app in &apps {
        assert!(served(app, &code).await.is_ok());
    }
    let edited = patch(
        &apps[0],
        &key,
        &code,
        serde_json::json!({"url": "https://example.com/v2"}),
    )
    .await;
    assert_eq!(edited.status, 200);
    // The feed is read every second: well within the cache TTL of a minute.
    let reached = eventually(Duration::from_secs(5), || async {
        served(&apps[1], &code).await == Ok("https://example.com/v2".into())
    })
    .await;
    assert!(reached, "the second instance never read the change");
    for app in apps {
        app.shutdown().await;
    }
}

#[tokio::test]
async fn if_match_guards_a_change_and_bad_edits_change_nothing() {
    let app = spawn_app(&[]).await;
    let key = make_key(&app.db_url, "owner", "links");
    let code = create_keyed(
        &app,
        &key,
        serde_json::json!({"url": "https://example.com/a"}),
    )
    .await;
    let path = format!("/{code}");
    let body = serde_json::json!({"url": "https://example.com/b"}).to_string();

    let stale = app
        .keyed_with("PATCH", &path, &key, &body, &[("If-Match", "\"7\"")])
        .await;
    stale.assert_problem(412);
    let weak = app
        .keyed_with("PATCH", &path, &key, &body, &[("If-Match", "W/\"1\"")])
        .await;
    weak.assert_problem(412);
    assert_eq!(
        served(&app, &code).await,
        Ok("https://example.com/a".into())
    );

    let current = app
        .keyed_with("PATCH", &path, &key, &body, &[("If-Match", "\"9\", \"1\"")])
        .await;
    assert_eq!(current.status, 200, "{}", current.text());
    assert_eq!(current.header("etag"), Some("\"2\""));
    let any = app
        .keyed_with(
            "PATCH",
            &path,
            &key,
            r#"{"expires_at": "2999-01-01T00:00:00Z"}"#,
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(any.status, 200, "{}", any.text());
    assert_eq!(any.json()["expires_at"], "2999-01-01T00:00:00Z");
    assert_eq!(
        any.json()["url"],
        "https://example.com/b",
        "other fields kept"
    );
    let cleared = patch(&app, &key, &code, serde_json::json!({"expires_at": null})).await;
    assert_eq!(cleared.json()["expires_at"], serde_json::Value::Null);
    assert_eq!(cleared.header("etag"), Some("\"4\""));

    for bad in [
        r#"{}"#,
        r#"[]"#,
        r#"{"code": "other"}"#,
        r#"{"url": "ftp://example.com/x"}"#,
        r#"{"url": 7}"#,
        r#"{"url": "http://sho.rt/a-loop"}"#,
        r#"{"expires_at": "tomorrow"}"#,
        r#"{"expires_at": "2001-01-01T00:00:00Z"}"#,
        r#"{"disabled": "yes"}"#,
        r#"{"disabled": true, "alias": "x"}"#,
        r#"{"url": "https://example.com/c""#,
    ] {
        let refused = app.keyed("PATCH", &path, &key, bad).await;
        refused.assert_problem(400);
    }
    let no_media_type = send(
        app.addr,
        "PATCH",
        &path,
        &[("Authorization", &format!("Bearer {key}"))],
        br#"{"disabled": true}"#,
    )
    .await;
    no_media_type.assert_problem(415);
    let stale_delete = app
        .keyed_with("DELETE", &path, &key, "", &[("If-Match", "\"1\"")])
        .await;
    stale_delete.assert_problem(412);
    // Nothing above changed the link: still version 4, served.
    let listed = app.keyed("GET", "/links", &key, "").await.json();
    assert_eq!(listed["items"][0]["etag"], "\"4\"", "{listed}");
    assert_eq!(
        served(&app, &code).await,
        Ok("https://example.com/b".into())
    );

    for method in ["PATCH", "DELETE"] {
        let unknown = app
            .keyed(method, "/nosuchcode", &key, r#"{"disabled": true}"#)
            .await;
        unknown.assert_problem(404);
    }
    assert_eq!(
        app.keyed_with("DELETE", &path, &key, "", &[("If-Match", "\"4\"")])
            .await
            .status,
        204
    );
    app.shutdown().await;
}

#[tokio::test]
async fn only_the_owner_or_an_admin_changes_a_link_and_anonymous_ones_only_an_admin() {
    let app = spawn_app(&[]).await;
    let (alice, bob, admin) = (
        make_key(&app.db_url, "alice", "links"),
        make_key(&app.db_url, "bob", "links"),
        make_key(&app.db_url, "ops", "admin"),
    );
    let owned = create_keyed(
        &app,
        &alice,
        serde_json::json!({"url": "https://example.com/o"}),
    )
    .await;
    let anonymous = app.create("https://example.com/anonymous").await;
    let edit = serde_json::json!({"disabled": true});

    for code in [&owned, &anonymous] {
        patch(&app, &bob, code, edit.clone())
            .await
            .assert_problem(403);
        app.keyed("DELETE", &format!("/{code}"), &bob, "")
            .await
            .assert_problem(403);
        let keyless = send(
            app.addr,
            "PATCH",
            &format!("/{code}"),
            &[("Content-Type", "application/json")],
            edit.to_string().as_bytes(),
        )
        .await;
        keyless.assert_problem(401);
        assert_eq!(keyless.header("www-authenticate"), Some("Bearer"));
        let keyless_delete = send(app.addr, "DELETE", &format!("/{code}"), &[], b"").await;
        keyless_delete.assert_problem(401);
    }
    patch(&app, &alice, &anonymous, edit.clone())
        .await
        .assert_problem(403);
    // Nothing was changed by the refused requests.
    assert!(served(&app, &owned).await.is_ok());
    assert!(served(&app, &anonymous).await.is_ok());

    assert_eq!(patch(&app, &alice, &owned, edit.clone()).await.status, 200);
    assert_eq!(
        patch(&app, &admin, &owned, serde_json::json!({"disabled": false}))
            .await
            .status,
        200
    );
    assert_eq!(
        patch(&app, &admin, &anonymous, edit.clone()).await.status,
        200
    );
    assert_eq!(served(&app, &anonymous).await, Err(410));
    assert_eq!(
        app.keyed("DELETE", &format!("/{anonymous}"), &admin, "")
            .await
            .status,
        204
    );

    // Every change is in the audit log, with who made it.
    let db = app.db().await;
    let rows = db
        .query(
            "SELECT actor, action, target FROM audit_log ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let lines: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        lines,
        [
            ("key:1".into(), "patch".into(), owned.clone()),
            ("key:3".into(), "patch".into(), owned.clone()),
            ("key:3".into(), "patch".into(), anonymous.clone()),
            ("key:3".into(), "delete".into(), anonymous.clone()),
        ]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_deleted_code_answers_410_everywhere_and_is_never_issued_again() {
    let app = spawn_app(&[]).await;
    let key = make_key(&app.db_url, "owner", "links");
    let code = create_keyed(
        &app,
        &key,
        serde_json::json!({"url": "https://example.com/d", "alias": "gone-for-good"}),
    )
    .await;
    let kept = create_keyed(
        &app,
        &key,
        serde_json::json!({"url": "https://example.com/k"}),
    )
    .await;
    assert!(served(&app, &code).await.is_ok());
    let path = format!("/{code}");
    assert_eq!(app.keyed("DELETE", &path, &key, "").await.status, 204);
    assert_eq!(
        app.keyed("DELETE", &path, &key, "").await.status,
        204,
        "again"
    );

    assert_eq!(served(&app, &code).await, Err(410));
    let head = send(app.addr, "HEAD", &path, &[], b"").await;
    assert_eq!(head.status, 410);
    app.get(&format!("{path}/stats")).await.assert_problem(410);
    patch(&app, &key, &code, serde_json::json!({"disabled": false}))
        .await
        .assert_problem(410);
    // Its alias is never issued again, to anyone.
    let again = app
        .shorten(r#"{"url": "https://example.com/new", "alias": "gone-for-good"}"#)
        .await;
    again.assert_problem(409);
    let listed = app.keyed("GET", "/links", &key, "").await.json();
    let codes: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, [kept.as_str()], "deleted links are left out");
    // The row stays (so the code stays taken), marked deleted.
    let db = app.db().await;
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM links WHERE code = 'gone-for-good' AND deleted_at IS NOT NULL"
        )
        .await,
        1
    );
    // A fresh instance, with nothing cached, answers 410 too.
    let fresh = spawn_app_on(&app.db_url, &[]).await;
    assert_eq!(served(&fresh, &code).await, Err(410));
    fresh.shutdown().await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_alias_shaped_like_a_generated_code_is_never_taken_for_it() {
    let app = spawn_app(&[]).await;
    let key = make_key(&app.db_url, "owner", "links");
    let generated = create_keyed(
        &app,
        &key,
        serde_json::json!({"url": "https://example.com/generated"}),
    )
    .await;
    // The same characters but one letter in the other case: a different code, with the shape
    // of a generated one (it decodes to an id too).
    let at = generated
        .find(|c: char| c.is_ascii_alphabetic())
        .expect("a letter in the code");
    let mut lookalike = generated.clone().into_bytes();
    lookalike[at] ^= 0x20;
    let lookalike = String::from_utf8(lookalike).unwrap();

    patch(
        &app,
        &key,
        &lookalike,
        serde_json::json!({"disabled": true}),
    )
    .await
    .assert_problem(404);
    app.keyed("DELETE", &format!("/{lookalike}"), &key, "")
        .await
        .assert_problem(404);
    app.get(&format!("/{lookalike}/stats"))
        .await
        .assert_problem(404);
    app.get(&format!("/{lookalike}/qr"))
        .await
        .assert_problem(404);
    assert!(served(&app, &generated).await.is_ok(), "left alone");

    create_keyed(
        &app,
        &key,
        serde_json::json!({"url": "https://example.com/alias", "alias": lookalike}),
    )
    .await;
    let edited = patch(
        &app,
        &key,
        &lookalike,
        serde_json::json!({"url": "https://example.com/alias-edited"}),
    )
    .await;
    assert_eq!(edited.json()["code"], lookalike.as_str());
    // Its stats and QR code are its own.
    let stats = app.get(&format!("/{lookalike}/stats")).await.json();
    assert_eq!(stats["url"], "https://example.com/alias-edited");
    let generated_stats = app.get(&format!("/{generated}/stats")).await.json();
    assert_eq!(generated_stats["url"], "https://example.com/generated");
    assert_eq!(app.get(&format!("/{lookalike}/qr")).await.status, 200);
    assert_eq!(
        served(&app, &lookalike).await,
        Ok("https://example.com/alias-edited".into())
    );
    assert_eq!(
        app.keyed("DELETE", &format!("/{lookalike}"), &key, "")
            .await
            .status,
        204
    );
    assert_eq!(served(&app, &lookalike).await, Err(410));
    assert_eq!(
        served(&app, &generated).await,
        Ok("https://example.com/generated".into()),
        "the generated code is untouched"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_takedown_by_command_reaches_every_instance_and_redis_with_or_without_redis_settings() {
    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    let extra = ["--cache-ttl", "60s"];
    let app = spawn_with_redis(&db_url, Topology::Single, &prefix, &extra).await;
    let announced = app.create("https://example.com/announced").await;
    let unannounced = app.create("https://example.com/unannounced").await;
    for code in [&announced, &unannounced] {
        assert!(served(&app, code).await.is_ok(), "cached");
    }
    let disable = |code: &str, redis: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shortener"));
        command.env_clear().env("DATABASE_URL", &db_url);
        if redis {
            command
                .env("REDIS_URL", common::redis_single_url())
                .env("SHORTENER_REDIS_KEY_PREFIX", &prefix);
        }
        let output = command.args(["disable", code]).output().unwrap();
        assert!(output.status.success(), "{output:?}");
    };

    // With the same Redis settings: written into Redis and announced.
    disable(&announced, true);
    let key = format!("{prefix}{announced}");
    assert!(
        common::redis::redis_get(Topology::Single, &key)
            .is_some_and(|held| held.starts_with("v2\n")),
        "written into Redis before the command ends"
    );
    assert!(every_instance_serves(std::slice::from_ref(&app), &announced, Err(410)).await);

    // Without: the instance reads it from the feed, and writes it into Redis for the rest.
    disable(&unannounced, false);
    let key = format!("{prefix}{unannounced}");
    let repaired = eventually(Duration::from_secs(5), || async {
        common::redis::redis_get(Topology::Single, &key)
            .is_some_and(|held| held.starts_with("v2\n"))
    })
    .await;
    assert!(repaired, "the instance wrote the new version into Redis");
    assert_eq!(served(&app, &unannounced).await, Err(410));
    let fresh = spawn_with_redis(&db_url, Topology::Single, &prefix, &extra).await;
    assert_eq!(served(&fresh, &unannounced).await, Err(410));
    assert_eq!(
        fresh
            .scrape()
            .await
            .value("shortener_link_resolutions_total", &[("outcome", "redis")]),
        1.0
    );
    fresh.shutdown().await;
    app.shutdown().await;
}
