//! The create options of link management: `max_visits` (exactly that many redirects on all
//! instances together, then 410; 503 while the count cannot be decided; the target hidden from
//! other people's stats) and `reuse` (the caller's existing live link to the same URL).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::redis::{Topology, spawn_with_redis};
use common::{DbProxy, TestApp, eventually, make_key, send, spawn_app, spawn_app_on};

async fn create(app: &TestApp, key: Option<&str>, body: serde_json::Value) -> common::TestResponse {
    match key {
        Some(key) => app.keyed("POST", "/shorten", key, &body.to_string()).await,
        None => app.shorten(&body.to_string()).await,
    }
}

#[tokio::test]
async fn a_link_redirects_exactly_max_visits_times_across_three_instances_then_answers_410() {
    const MAX: usize = 25;
    const CLIENTS: usize = 20;
    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    let apps = Arc::new([
        spawn_with_redis(&db_url, Topology::Single, &prefix, &[]).await,
        spawn_with_redis(&db_url, Topology::Single, &prefix, &[]).await,
        spawn_with_redis(&db_url, Topology::Single, &prefix, &[]).await,
    ]);
    let key = make_key(&db_url, "owner", "links");
    let made = create(
        &apps[0],
        Some(&key),
        serde_json::json!({"url": "https://example.com/limited", "max_visits": MAX}),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let code = made.json()["code"].as_str().unwrap().to_owned();

    // Clients on every instance, GET and HEAD, people and bots, each until it is refused.
    let redirects = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (apps, code, redirects) = (Arc::clone(&apps), code.clone(), Arc::clone(&redirects));
        clients.push(tokio::spawn(async move {
            let mut sent = 0;
            loop {
                let app = &apps[(client + sent) % apps.len()];
                let method = if sent % 2 == 0 { "GET" } else { "HEAD" };
                let agent = if client % 3 == 0 {
                    "Mozilla/5.0 (compatible; Googlebot/2.1)"
                } else {
                    "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
                };
                let answer = send(
                    app.addr,
                    method,
                    &format!("/{code}"),
                    &[("User-Agent", agent)],
                    b"",
                )
                .await;
                sent += 1;
                match answer.status {
                    302 => {
                        assert!(answer.header("location").is_some());
                        redirects.fetch_add(1, Ordering::SeqCst);
                    }
                    410 => return,
                    other => panic!("unexpected {other}: {}", answer.text()),
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        redirects.load(Ordering::SeqCst),
        MAX,
        "exactly max_visits redirects"
    );
    for app in apps.iter() {
        assert_eq!(app.get(&format!("/{code}")).await.status, 410);
    }
    let listed = apps[1].keyed("GET", "/links", &key, "").await.json();
    assert_eq!(listed["items"][0]["max_visits"], MAX);
    assert_eq!(listed["items"][0]["visits_left"], 0);
    let apps = Arc::into_inner(apps).unwrap();
    for app in apps {
        app.shutdown().await;
    }
}

#[tokio::test]
async fn a_visit_limited_link_answers_503_while_its_count_cannot_be_decided_never_an_uncounted_redirect()
 {
    let db_url = common::fresh_database().await;
    let proxy = DbProxy::start(&db_url).await;
    let app = spawn_app_on(&proxy.url, &["--db-acquire-timeout", "250ms"]).await;
    let key = make_key(&db_url, "owner", "links");
    let made = create(
        &app,
        Some(&key),
        serde_json::json!({"url": "https://example.com/counted", "max_visits": 5}),
    )
    .await;
    let code = made.json()["code"].as_str().unwrap().to_owned();
    let path = format!("/{code}");
    assert_eq!(
        app.get(&path).await.status,
        302,
        "one visit, and the link is cached"
    );
    let unlimited = app.create("https://example.com/unlimited").await;
    assert_eq!(app.get(&format!("/{unlimited}")).await.status, 302);

    proxy.cut();
    for method in ["GET", "HEAD"] {
        let refused = send(app.addr, method, &path, &[], b"").await;
        assert_eq!(refused.status, 503, "{method}: {}", refused.text());
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(refused.header("location"), None);
    }
    // A link without a limit is still served from memory.
    assert_eq!(app.get(&format!("/{unlimited}")).await.status, 302);

    proxy.restore();
    let back = eventually(Duration::from_secs(10), || async {
        app.get(&path).await.status == 302
    })
    .await;
    assert!(back, "redirects again once the primary answers");
    // Two redirects answered, two visits taken: none of the 503s took one.
    let db = common::connect(&db_url).await;
    let left: i64 = db
        .query_one("SELECT visits_left FROM links WHERE code = $1", &[&code])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 3);
    app.shutdown().await;
}

#[tokio::test]
async fn the_stats_of_a_visit_limited_link_show_its_target_to_its_owner_and_admins_only() {
    let app = spawn_app(&[]).await;
    let (owner, other, admin) = (
        make_key(&app.db_url, "owner", "links"),
        make_key(&app.db_url, "other", "links"),
        make_key(&app.db_url, "ops", "admin"),
    );
    let made = create(
        &app,
        Some(&owner),
        serde_json::json!({"url": "https://example.com/secret", "max_visits": 1}),
    )
    .await;
    let code = made.json()["code"].as_str().unwrap().to_owned();
    let stats = format!("/{code}/stats");
    let anonymous = app.get(&stats).await;
    assert_eq!(anonymous.status, 200);
    assert!(
        anonymous.json().get("url").is_none(),
        "{}",
        anonymous.text()
    );
    assert!(!anonymous.text().contains("secret"));
    let others = app.keyed("GET", &stats, &other, "").await;
    assert!(others.json().get("url").is_none(), "{}", others.text());
    for key in [&owner, &admin] {
        let shown = app.keyed("GET", &stats, key, "").await;
        assert_eq!(shown.json()["url"], "https://example.com/secret");
    }
    // Links without a limit show their target to anyone, as before.
    let open = app.create("https://example.com/open").await;
    assert_eq!(
        app.get(&format!("/{open}/stats")).await.json()["url"],
        "https://example.com/open"
    );

    for bad in [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!("5"),
        serde_json::json!(1.5),
        serde_json::json!(1e30),
    ] {
        let refused = create(
            &app,
            None,
            serde_json::json!({"url": "https://example.com/x", "max_visits": bad}),
        )
        .await;
        refused.assert_problem(400);
    }
    assert_eq!(app.count("links").await, 2);
    app.shutdown().await;
}

#[tokio::test]
async fn reuse_answers_the_callers_own_live_link_to_the_same_url_with_200() {
    let app = spawn_app(&[]).await;
    let (alice, bob) = (
        make_key(&app.db_url, "alice", "links"),
        make_key(&app.db_url, "bob", "links"),
    );
    let reuse = |url: &str| serde_json::json!({"url": url, "reuse": true});

    let first = create(&app, Some(&alice), reuse("https://example.com/r")).await;
    assert_eq!(first.status, 201, "nothing to reuse yet");
    let code = first.json()["code"].as_str().unwrap().to_owned();
    // The same canonical URL, spelt otherwise.
    let again = create(&app, Some(&alice), reuse("HTTPS://EXAMPLE.com:443/r")).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["code"], code.as_str());
    assert_eq!(again.json()["short_url"], format!("http://sho.rt/{code}"));
    // Another owner, another URL, or no `reuse`: a new link.
    let mut made_here = Vec::new();
    for (key, body) in [
        (Some(&bob), reuse("https://example.com/r")),
        (None, reuse("https://example.com/r")),
        (Some(&alice), reuse("https://example.com/other")),
        (
            Some(&alice),
            serde_json::json!({"url": "https://example.com/r"}),
        ),
    ] {
        let made = create(&app, key.map(String::as_str), body).await;
        assert_eq!(made.status, 201, "{}", made.text());
        assert_ne!(made.json()["code"], code.as_str());
        made_here.push(made.json()["code"].as_str().unwrap().to_owned());
    }
    // Made without `reuse`, it may still be reused later: it is alice's newest to that URL.
    let unflagged = made_here.pop().unwrap();
    let again = create(&app, Some(&alice), reuse("https://example.com/r")).await;
    assert_eq!(
        (again.status, again.json()["code"].as_str()),
        (200, Some(unflagged.as_str()))
    );
    // Anonymous callers reuse by their address.
    let anonymous = create(&app, None, reuse("https://example.com/r")).await;
    assert_eq!(anonymous.status, 200, "the anonymous one made above");

    // Links with an alias, an expiry or a visit limit are never reused, nor do they reuse.
    for extra in [
        serde_json::json!({"alias": "special-r"}),
        serde_json::json!({"expires_at": "2999-01-01T00:00:00Z"}),
        serde_json::json!({"max_visits": 3}),
    ] {
        let mut body = reuse("https://example.com/special");
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let made = create(&app, Some(&alice), body.clone()).await;
        assert_eq!(made.status, 201, "{}", made.text());
    }
    let plain = create(&app, Some(&alice), reuse("https://example.com/special")).await;
    assert_eq!(plain.status, 201, "none of the special ones was reused");

    // A disabled, deleted or edited link is not reused.
    for link in [&code, &unflagged] {
        let disabled = app
            .keyed(
                "PATCH",
                &format!("/{link}"),
                &alice,
                r#"{"disabled": true}"#,
            )
            .await;
        assert_eq!(disabled.status, 200);
    }
    let while_disabled = create(&app, Some(&alice), reuse("https://example.com/r")).await;
    assert_eq!(while_disabled.status, 201);
    let newer = while_disabled.json()["code"].as_str().unwrap().to_owned();
    assert_eq!(
        app.keyed(
            "PATCH",
            &format!("/{newer}"),
            &alice,
            r#"{"url": "https://example.com/moved"}"#
        )
        .await
        .status,
        200
    );
    let after_edit = create(&app, Some(&alice), reuse("https://example.com/r")).await;
    assert_eq!(
        after_edit.status, 201,
        "the edited link points elsewhere now"
    );
    let latest = after_edit.json()["code"].as_str().unwrap().to_owned();
    assert_eq!(
        app.keyed("DELETE", &format!("/{latest}"), &alice, "")
            .await
            .status,
        204
    );
    let after_delete = create(&app, Some(&alice), reuse("https://example.com/r")).await;
    assert_eq!(after_delete.status, 201);
    assert_ne!(after_delete.json()["code"], latest.as_str());

    let refused = create(
        &app,
        None,
        serde_json::json!({"url": "https://example.com/r", "reuse": "yes"}),
    )
    .await;
    refused.assert_problem(400);
    app.shutdown().await;
}
