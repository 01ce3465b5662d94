//! API keys: `shortener apikey create|list|revoke`, keys on requests (401 without a valid one
//! where one is needed), owners of links and what each scope may list, limits and idempotency
//! scopes per key, revocation reaching every instance within 5 s, unknown keys costing one
//! lookup each at most, and a key appearing nowhere but in the answer of the command that made
//! it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestApp, bearer, eventually, make_key, scalar, spawn_app, spawn_app_on};

const BODY: &str = r#"{"url": "https://example.com/keyed"}"#;

fn shortener(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .env("DATABASE_URL", db_url)
        .args(args)
        .output()
        .unwrap()
}

async fn create_with(app: &TestApp, key: &str, url: &str) -> String {
    let body = serde_json::json!({ "url": url }).to_string();
    let response = app.keyed("POST", "/shorten", key, &body).await;
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_command_prints_a_key_once_lists_keys_without_them_and_revokes() {
    let db_url = common::fresh_database().await;
    let output = shortener(
        &db_url,
        &["apikey", "create", "--name", "ci bot", "--scope", "links"],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.lines().next().unwrap();
    assert_eq!(
        stdout,
        format!("{key}\n"),
        "the key alone, on the first line"
    );
    assert!(key.starts_with("shk_") && key.len() >= 36, "{key}");
    assert!(
        key[4..].bytes().all(|byte| byte.is_ascii_alphanumeric()),
        "{key}"
    );
    make_key(&db_url, "admin", "admin");

    let listed = shortener(&db_url, &["apikey", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("1 ci bot links "), "{listed}");
    assert!(
        lines[0].ends_with(" - -"),
        "never used, not revoked: {listed}"
    );
    assert!(lines[1].starts_with("2 admin admin "), "{listed}");
    assert!(!listed.contains(key), "a listing never shows a key");
    // Only the digest is stored.
    let db = common::connect(&db_url).await;
    let stored: i64 = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM api_keys WHERE digest::text LIKE '%{}%'",
            &key[4..12]
        ),
    )
    .await;
    assert_eq!(stored, 0);

    assert!(
        shortener(&db_url, &["apikey", "revoke", "1"])
            .status
            .success()
    );
    let listed = String::from_utf8(shortener(&db_url, &["apikey", "list"]).stdout).unwrap();
    assert!(!listed.lines().next().unwrap().ends_with(" -"), "{listed}");
    assert_eq!(
        shortener(&db_url, &["apikey", "revoke", "99"])
            .status
            .code(),
        Some(1)
    );
    let bad_scope = shortener(
        &db_url,
        &["apikey", "create", "--name", "x", "--scope", "root"],
    );
    assert!(!bad_scope.status.success());
    let audit = String::from_utf8(shortener(&db_url, &["audit"]).stdout).unwrap();
    assert!(audit.contains(" cli revoke key:1 "), "{audit}");
}

#[tokio::test]
async fn keys_are_needed_where_the_contract_says_and_bad_ones_are_401() {
    let app = spawn_app(&[]).await;
    let key = make_key(&app.db_url, "owner", "links");
    // Creates need none by default; listing does.
    assert_eq!(app.shorten(BODY).await.status, 201);
    let missing = app.get("/links").await;
    missing.assert_problem(401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let malformed = format!("shk_{}", "short");
    let unknown = format!("shk_{}", "a".repeat(40));
    for (header, value) in [
        ("Authorization", format!("Bearer {malformed}")),
        ("Authorization", format!("Bearer {unknown}")),
        ("Authorization", format!("Basic {key}")),
        ("Authorization", key.clone()),
    ] {
        let answer = common::send(app.addr, "GET", "/links", &[(header, &value)], b"").await;
        answer.assert_problem(401);
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{value}");
        // A key sent to a route that takes one optionally is checked too.
        let create = common::send(
            app.addr,
            "POST",
            "/shorten",
            &[(header, &value), ("Content-Type", "application/json")],
            BODY.as_bytes(),
        )
        .await;
        create.assert_problem(401);
    }
    assert_eq!(app.keyed("GET", "/links", &key, "").await.status, 200);
    app.shutdown().await;

    let strict = spawn_app(&["--require-api-key-for-create", "true"]).await;
    let key = make_key(&strict.db_url, "owner", "links");
    let refused = strict.shorten(BODY).await;
    refused.assert_problem(401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(strict.count("links").await, 0);
    assert_eq!(
        strict.keyed("POST", "/shorten", &key, BODY).await.status,
        201
    );
    strict.shutdown().await;
}

#[tokio::test]
async fn a_key_lists_its_own_links_newest_first_in_pages_and_an_admin_key_all() {
    let app = spawn_app(&[]).await;
    let (alice, bob) = (
        make_key(&app.db_url, "alice", "links"),
        make_key(&app.db_url, "bob", "links"),
    );
    let admin = make_key(&app.db_url, "ops", "admin");
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(create_with(&app, &alice, &format!("https://example.com/alice/{n}")).await);
    }
    let bobs = create_with(&app, &bob, "https://example.com/bob").await;
    let anonymous = app.create("https://example.com/anonymous").await;

    let first = app.keyed("GET", "/links?limit=2", &alice, "").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let page = first.json();
    let codes = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(codes(&page), [mine[4].clone(), mine[3].clone()]);
    let item = &page["items"][0];
    for field in [
        "code",
        "short_url",
        "url",
        "created_at",
        "expires_at",
        "clicks",
        "disabled",
        "max_visits",
        "visits_left",
        "etag",
    ] {
        assert!(item.get(field).is_some(), "{field} missing: {item}");
    }
    assert_eq!(item["etag"], "\"1\"");
    assert_eq!(item["disabled"], false);
    let mut seen = codes(&page);
    let mut cursor = page["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let next = app
            .keyed(
                "GET",
                &format!("/links?limit=2&cursor={cursor}"),
                &alice,
                "",
            )
            .await
            .json();
        seen.extend(codes(&next));
        match next["next_cursor"].as_str() {
            Some(more) => cursor = more.to_owned(),
            None => break,
        }
    }
    let mut newest_first = mine.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every own link once, newest first");

    let all = codes(
        &app.keyed("GET", "/links?limit=1000", &admin, "")
            .await
            .json(),
    );
    for code in mine.iter().chain([&bobs, &anonymous]) {
        assert!(
            all.contains(code),
            "{code} missing from the admin's listing"
        );
    }
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=abc",
        "cursor=-5",
        "cursor=12345678901234567890",
    ] {
        app.keyed("GET", &format!("/links?{bad}"), &alice, "")
            .await
            .assert_problem(400);
    }
    // Any decimal of up to 19 digits is a place in the list (openapi.json): past every id,
    // the first page; 0, nothing.
    let from_the_top = app
        .keyed(
            "GET",
            "/links?limit=1000&cursor=9999999999999999999",
            &alice,
            "",
        )
        .await
        .json();
    assert_eq!(codes(&from_the_top), newest_first);
    let nothing = app.keyed("GET", "/links?cursor=0", &alice, "").await.json();
    assert!(codes(&nothing).is_empty(), "{nothing}");
    app.shutdown().await;
}

#[tokio::test]
async fn each_key_has_its_own_create_limit_and_idempotency_scope() {
    let app = spawn_app(&["--rate-limit-create", "60/h,burst=2"]).await;
    let (one, two) = (
        make_key(&app.db_url, "one", "links"),
        make_key(&app.db_url, "two", "links"),
    );
    for key in [&one, &two] {
        for n in 0..2 {
            let url = format!("https://example.com/limit/{n}");
            create_with(&app, key, &url).await;
        }
        app.keyed("POST", "/shorten", key, BODY)
            .await
            .assert_problem(429);
    }
    // The address's own bucket is untouched by its keys.
    assert_eq!(app.shorten(BODY).await.status, 201);

    // One Idempotency-Key under two keys: two scopes, two links; under one key, a replay.
    let unlimited = spawn_app_on(&app.db_url, &[]).await;
    let idempotent = |key: String| {
        let app = &unlimited;
        async move {
            app.keyed_with(
                "POST",
                "/shorten",
                &key,
                BODY,
                &[("Idempotency-Key", "same")],
            )
            .await
        }
    };
    let first = idempotent(one.clone()).await;
    let other = idempotent(two.clone()).await;
    assert_eq!((first.status, other.status), (201, 201));
    assert_ne!(first.json()["code"], other.json()["code"]);
    let again = idempotent(one.clone()).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    // The scope names the key's id, never the key.
    let db = app.db().await;
    let scopes: Vec<String> = db
        .query("SELECT scope FROM idempotency_keys ORDER BY scope", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(scopes, ["key:1", "key:2"]);
    let leaked: i64 = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM idempotency_keys WHERE body LIKE '%{one}%' OR scope LIKE '%shk_%'"
        ),
    )
    .await;
    assert_eq!(leaked, 0);
    app.shutdown().await;
    unlimited.shutdown().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_every_instance_within_five_seconds() {
    let db_url = common::fresh_database().await;
    let key = make_key(&db_url, "soon revoked", "links");
    let apps = [
        spawn_app_on(&db_url, &[]).await,
        spawn_app_on(&db_url, &[]).await,
        spawn_app_on(&db_url, &[]).await,
    ];
    for app in &apps {
        assert_eq!(app.keyed("GET", "/links", &key, "").await.status, 200);
    }
    let revoked_at = std::time::Instant::now();
    assert!(
        shortener(&db_url, &["apikey", "revoke", "1"])
            .status
            .success()
    );
    for app in &apps {
        let refused = eventually(Duration::from_secs(5), || async {
            app.keyed("GET", "/links", &key, "").await.status == 401
        })
        .await;
        assert!(refused, "still accepted after {:?}", revoked_at.elapsed());
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        revoked_at.elapsed()
    );
    for app in apps {
        app.shutdown().await;
    }
}

#[tokio::test]
async fn a_key_made_after_start_works_at_once_and_unknown_keys_cost_one_lookup_each() {
    let app = spawn_app(&[]).await;
    let lookups = |scrape: &common::Scrape| {
        scrape.value(
            "shortener_db_operations_total",
            &[("operation", "key_lookup")],
        )
    };
    // Made after the instance read its keys: looked up once, then held.
    let fresh = make_key(&app.db_url, "fresh", "links");
    let before = lookups(&app.scrape().await);
    for _ in 0..5 {
        assert_eq!(app.keyed("GET", "/links", &fresh, "").await.status, 200);
    }
    assert!(lookups(&app.scrape().await) - before <= 1.0);
    // One unknown key, a hundred times: one lookup.
    let unknown = format!("shk_{}", "Z".repeat(32));
    let before = lookups(&app.scrape().await);
    for _ in 0..100 {
        app.keyed("GET", "/links", &unknown, "")
            .await
            .assert_problem(401);
    }
    assert_eq!(lookups(&app.scrape().await) - before, 1.0);
    // Many random keys from one client: at most its burst of lookups, then none.
    let before = lookups(&app.scrape().await);
    for n in 0..60 {
        let random = format!("shk_{:0>32}", n);
        app.keyed("GET", "/links", &random, "")
            .await
            .assert_problem(401);
    }
    let made = lookups(&app.scrape().await) - before;
    assert!(
        (1.0..=25.0).contains(&made),
        "{made} lookups for 60 random keys"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_instance_that_cannot_read_its_keys_answers_keyed_requests_503() {
    let db_url = common::fresh_database().await;
    let key = make_key(&db_url, "key", "links");
    let proxy = common::DbProxy::start(&db_url).await;
    let app = spawn_app_on(&proxy.url, &["--db-acquire-timeout", "200ms"]).await;
    assert_eq!(app.keyed("GET", "/links", &key, "").await.status, 200);
    let age = |scrape: common::Scrape| scrape.value("shortener_api_keys_age_seconds", &[]);
    assert!(age(app.scrape().await) < 5.0);
    let cached = app.create("https://example.com/cached").await;
    proxy.cut();
    let cut_at = std::time::Instant::now();
    let stale = eventually(Duration::from_secs(10), || async {
        let answer = app.keyed("GET", "/links", &key, "").await;
        answer.status == 503
            && answer.header("retry-after").is_some()
            && answer.json()["type"] == "urn:shortener:problem:keys-unavailable"
    })
    .await;
    assert!(stale, "a key set older than 5 s was still trusted");
    assert!(
        cut_at.elapsed() >= Duration::from_secs(4),
        "refused too early: {:?}",
        cut_at.elapsed()
    );
    // What the operator sees: the age past the bound (ApiKeysStale).
    assert!(age(app.scrape().await) > 5.0);
    // Requests without a key are not affected by the key set.
    assert_eq!(app.get(&format!("/{cached}")).await.status, 302);
    proxy.restore();
    let fresh = eventually(Duration::from_secs(10), || async {
        app.keyed("GET", "/links", &key, "").await.status == 200
    })
    .await;
    assert!(fresh);
    assert!(age(app.scrape().await) < 5.0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_appears_nowhere_in_the_logs_or_metrics_of_a_server_that_checks_it() {
    let db_url = common::fresh_database().await;
    let key = make_key(&db_url, "secret", "links");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, admin) = (free(), free());
    let child = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .arg("serve")
        .env("DATABASE_URL", &db_url)
        .env("SHORTENER_LISTEN", listen.to_string())
        .env("SHORTENER_ADMIN_LISTEN", admin.to_string())
        .env("SHORTENER_LOG_FORMAT", "json")
        .env("SHORTENER_ACCESS_LOG", "all")
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(admin).await.is_ok()
            && common::send(admin, "GET", "/readyz", &[], b"").await.status == 200
    })
    .await;
    assert!(ready, "the server did not become ready");
    let wrong = format!("{key}X");
    for value in [key.as_str(), wrong.as_str()] {
        let (name, value) = bearer(value);
        common::send(listen, "GET", "/links", &[(name, &value)], b"").await;
        common::send(
            listen,
            "POST",
            "/shorten",
            &[(name, &value), ("Content-Type", "application/json")],
            BODY.as_bytes(),
        )
        .await;
    }
    let metrics = common::send(admin, "GET", "/metrics", &[], b"").await;
    assert!(
        !metrics.text().contains(&key[4..]),
        "a metric shows the key"
    );
    // SAFETY: kill(2) on our own child; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(
        logs.contains("\"status\":200"),
        "the requests were logged: {logs}"
    );
    assert!(logs.contains("\"status\":401"), "the bad key's too: {logs}");
    assert!(!logs.contains(&key[4..]), "the key was logged: {logs}");
}
