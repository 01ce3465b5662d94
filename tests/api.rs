//! The HTTP contract of create, redirect and stats, against the real server and Postgres.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{PUBLIC_BASE, eventually, send, spawn_app, spawn_app_on};
use serde_json::json;

#[tokio::test]
async fn create_then_redirect_then_stats() {
    let app = spawn_app(&[]).await;
    let created = app
        .shorten(r#"{"url": "https://Example.com/some/long path?q=1"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    let code = body["code"].as_str().unwrap();
    assert_eq!(code.len(), 11);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(body["short_url"], format!("{PUBLIC_BASE}/{code}"));
    assert_eq!(created.header("location"), body["short_url"].as_str());
    assert_eq!(body["url"], "https://example.com/some/long%20path?q=1");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["expires_at"], serde_json::Value::Null);
    assert_eq!(created.header("content-type"), Some("application/json"));

    let redirect = app.get(&format!("/{code}")).await;
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location"),
        Some("https://example.com/some/long%20path?q=1")
    );
    assert_eq!(redirect.header("cache-control"), Some("private, max-age=0"));
    for path in [
        format!("/{code}?utm=x"),
        format!("/{code}/"),
        format!("/{code}/?a=b"),
    ] {
        assert_eq!(app.get(&path).await.status, 302, "{path}");
    }
    let head = send(app.addr, "HEAD", &format!("/{code}"), &[], b"").await;
    assert_eq!(head.status, 302);
    assert!(head.body.is_empty());
    let bot = send(
        app.addr,
        "GET",
        &format!("/{code}"),
        &[("User-Agent", "Twitterbot/1.0")],
        b"",
    )
    .await;
    assert_eq!(bot.status, 302);

    // 4 GETs by people, 1 by a bot, 1 HEAD (not counted).
    let stats_path = format!("/{code}/stats");
    let counted = eventually(Duration::from_secs(5), || async {
        let stats = app.get(&stats_path).await.json();
        stats["clicks"] == 4 && stats["bot_clicks"] == 1
    })
    .await;
    let stats = app.get(&stats_path).await;
    assert!(counted, "clicks never reached the stats: {}", stats.text());
    let stats = stats.json();
    assert_eq!(stats["code"], code);
    assert_eq!(stats["url"], "https://example.com/some/long%20path?q=1");
    assert_eq!(stats["created_at"], body["created_at"]);
    assert_eq!(stats["expires_at"], serde_json::Value::Null);
    assert!(stats["last_click_at"].is_string());
    let daily = stats["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 1);
    assert_eq!(daily[0]["clicks"], 4);
    assert_eq!(daily[0]["bot_clicks"], 1);
    assert_eq!(daily[0]["date"].as_str().unwrap().len(), 10);
    app.shutdown().await;
}

#[tokio::test]
async fn stats_of_a_link_without_clicks_and_unknown_codes() {
    let app = spawn_app(&[]).await;
    let code = app.create("https://example.com/").await;
    let stats = app.get(&format!("/{code}/stats")).await;
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(
        (stats["clicks"].clone(), stats["bot_clicks"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(stats["last_click_at"], serde_json::Value::Null);
    assert_eq!(stats["daily"], json!([]));
    app.get("/doesnotexist/stats").await.assert_problem(404);
    app.get("/AAAAAAAAAAA/stats").await.assert_problem(404);
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_codes_and_paths_are_404() {
    let app = spawn_app(&[]).await;
    for path in [
        "/nope",
        "/AAAAAAAAAAA",
        "/zzzzzzzzzzz",
        "/",
        "/a.b",
        "/x/y/z",
        "/%41bc",
        "/abc/other",
    ] {
        app.get(path).await.assert_problem(404);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = spawn_app(&[]).await;
    let get_shorten = app.get("/shorten").await;
    get_shorten.assert_problem(405);
    assert_eq!(get_shorten.header("allow"), Some("POST"));
    let post_code = send(app.addr, "POST", "/abcdef", &[], b"").await;
    post_code.assert_problem(405);
    // A link's path also takes its owner's PATCH and DELETE (API keys).
    assert_eq!(post_code.header("allow"), Some("GET, HEAD, PATCH, DELETE"));
    send(app.addr, "DELETE", "/abcdef/stats", &[], b"")
        .await
        .assert_problem(405);
    app.shutdown().await;
}

#[tokio::test]
async fn aliases_are_used_as_codes_and_refused_when_taken_or_reserved() {
    let app = spawn_app(&[]).await;
    let created = app
        .shorten(r#"{"url": "https://example.com/a", "alias": "my-link"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["code"], "my-link");
    assert_eq!(
        created.json()["short_url"],
        format!("{PUBLIC_BASE}/my-link")
    );
    assert_eq!(
        app.get("/my-link").await.header("location"),
        Some("https://example.com/a")
    );

    let taken = app
        .shorten(r#"{"url": "https://example.com/b", "alias": "my-link"}"#)
        .await;
    taken.assert_problem(409);
    for alias in [
        "shorten",
        "Links",
        "HealthZ",
        "metrics",
        "api",
        "admin",
        "static",
        "v1",
        "openapi.json",
        "ab",
        "has space",
        "slash/es",
        &"x".repeat(65),
    ] {
        let body = json!({ "url": "https://example.com/", "alias": alias }).to_string();
        app.shorten(&body).await.assert_problem(400);
    }
    assert_eq!(app.count("links").await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn an_alias_shaped_like_a_generated_code_resolves_to_its_own_link() {
    let app = spawn_app(&[]).await;
    let generated = app.create("https://example.com/generated").await;
    // Any 11-character alphanumeric alias decodes to some id; the lookup must still find
    // the alias by its code. (The one alias that decodes to an existing link's id is that
    // link's own code, which is taken: checked below.)
    let alias = "Abcdefghijk";
    let body = json!({ "url": "https://example.com/alias", "alias": alias }).to_string();
    assert_eq!(app.shorten(&body).await.status, 201);
    assert_eq!(
        app.get(&format!("/{alias}")).await.header("location"),
        Some("https://example.com/alias")
    );
    assert_eq!(
        app.get(&format!("/{generated}")).await.header("location"),
        Some("https://example.com/generated")
    );
    // An alias equal to an existing generated code is taken.
    let body = json!({ "url": "https://example.com/x", "alias": generated }).to_string();
    app.shorten(&body).await.assert_problem(409);
    app.shutdown().await;
}

#[tokio::test]
async fn expiry_is_validated_echoed_and_enforced() {
    let app = spawn_app(&[]).await;
    let created = app
        .shorten(r#"{"url": "https://example.com/", "expires_at": "2099-01-01T01:00:00+01:00"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["expires_at"], "2099-01-01T00:00:00Z");
    let code = created.json()["code"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);

    for bad in ["2001-01-01T00:00:00Z", "tomorrow", "2099-01-01", ""] {
        let body = json!({ "url": "https://example.com/", "expires_at": bad }).to_string();
        app.shorten(&body).await.assert_problem(400);
    }

    let db = app.db().await;
    db.execute(
        "UPDATE links SET expires_at = now() - interval '1 second' WHERE code = $1",
        &[&code],
    )
    .await
    .unwrap();
    let disabled = app.create("https://example.com/disabled").await;
    db.execute(
        "UPDATE links SET disabled_at = now() WHERE code = $1",
        &[&disabled],
    )
    .await
    .unwrap();
    // This instance cached both links when it created them and serves them until its cache
    // TTL passes (tests/cache.rs covers that bound, and expiry while cached); an instance
    // that reads them from the database sees the change at once.
    let other = spawn_app_on(&app.db_url, &[]).await;
    other.get(&format!("/{code}")).await.assert_problem(410);
    // Stats stay readable for the owner.
    assert_eq!(other.get(&format!("/{code}/stats")).await.status, 200);
    other.get(&format!("/{disabled}")).await.assert_problem(410);
    other.shutdown().await;
    app.shutdown().await;
}

#[tokio::test]
async fn request_shape_errors() {
    let app = spawn_app(&[]).await;
    // 415: missing or other content type.
    send(
        app.addr,
        "POST",
        "/shorten",
        &[],
        br#"{"url":"https://example.com/"}"#,
    )
    .await
    .assert_problem(415);
    send(
        app.addr,
        "POST",
        "/shorten",
        &[("Content-Type", "text/plain")],
        br#"{"url":"https://example.com/"}"#,
    )
    .await
    .assert_problem(415);
    let with_charset = send(
        app.addr,
        "POST",
        "/shorten",
        &[("Content-Type", "Application/JSON; charset=utf-8")],
        br#"{"url":"https://example.com/"}"#,
    )
    .await;
    assert_eq!(with_charset.status, 201);
    // 400: malformed JSON, wrong types, missing url, unknown fields.
    for body in [
        "{",
        "not json",
        "[]",
        r#"{"url": 5}"#,
        "{}",
        r#"{"alias": "abc"}"#,
        r#"{"url": "https://example.com/", "extra": 1}"#,
        r#"{"url": "https://example.com/", "alias": 7}"#,
    ] {
        app.shorten(body).await.assert_problem(400);
    }
    // 413: too large, declared or not.
    let big = format!(r#"{{"url": "https://example.com/{}"}}"#, "a".repeat(9000));
    app.shorten(&big).await.assert_problem(413);
    assert_eq!(app.count("links").await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_get_distinct_codes() {
    let app = spawn_app(&[]).await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                let mut codes = Vec::new();
                for i in 0..40 {
                    codes.push(app.create(&format!("https://example.com/{task}/{i}")).await);
                }
                codes
            })
        })
        .collect();
    let mut codes = HashSet::new();
    for task in tasks {
        for code in task.await.unwrap() {
            assert!(codes.insert(code.clone()), "duplicate code {code}");
        }
    }
    assert_eq!(codes.len(), 320);
    assert_eq!(app.count("links").await, 320);
    let mut neighbours = 0;
    let mut sorted: Vec<_> = codes.into_iter().collect();
    sorted.sort();
    for pair in sorted.windows(2) {
        if pair[0][..8] == pair[1][..8] {
            neighbours += 1;
        }
    }
    assert_eq!(neighbours, 0, "codes of consecutive ids look alike");
    std::sync::Arc::into_inner(app).unwrap().shutdown().await;
}

#[tokio::test]
async fn redirect_status_and_cache_lifetime_are_configurable() {
    let db_url = common::fresh_database().await;
    for status in ["301", "307", "308"] {
        let flags = ["--redirect-status", status, "--redirect-max-age", "60"];
        let app = common::spawn_app_on(&db_url, &flags).await;
        let code = app.create("https://example.com/").await;
        let redirect = app.get(&format!("/{code}")).await;
        assert_eq!(redirect.status.to_string(), status);
        assert_eq!(redirect.header("location"), Some("https://example.com/"));
        assert_eq!(
            redirect.header("cache-control"),
            Some("private, max-age=60")
        );
        app.shutdown().await;
    }
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app(&[]).await;
    let code = app.create("https://example.com/").await;
    let addr = app.addr;
    let head = |path: String| async move { send(addr, "HEAD", &path, &[], b"").await };
    let stats = head(format!("/{code}/stats")).await;
    assert_eq!(stats.status, 200);
    assert!(stats.body.is_empty());
    let missing = head("/missing".into()).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert!(missing.body.is_empty());
    app.db()
        .await
        .execute("UPDATE links SET disabled_at = now()", &[])
        .await
        .unwrap();
    // This instance cached the link when it created it, and serves it until its cache TTL
    // passes (tests/cache.rs); an instance that has not cached it sees the change at once.
    let other = spawn_app_on(&app.db_url, &[]).await;
    let gone = send(other.addr, "HEAD", &format!("/{code}"), &[], b"").await;
    assert_eq!(gone.status, 410);
    assert!(gone.body.is_empty());
    other.shutdown().await;
    app.shutdown().await;
}

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let app = spawn_app(&[]).await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/shorten",
        "/shorten/batch",
        "/links",
        "/{code}",
        "/{code}/stats",
        "/{code}/qr",
        "/openapi.json",
    ] {
        assert!(document["paths"][path].is_object(), "{path} missing");
    }
    for method in ["patch", "delete"] {
        assert!(
            document["paths"]["/{code}"][method].is_object(),
            "/{{code}} {method} missing"
        );
    }

    // Links from a created link to the routes that take its code; a `$ref`
    // is resolved within the document (e.g. into components.links).
    let resolve = |value: &serde_json::Value| -> serde_json::Value {
        match value["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("local $ref");
                document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} does not resolve"))
                    .clone()
            }
            None => value.clone(),
        }
    };
    let created_links =
        resolve(&document["paths"]["/shorten"]["post"]["responses"]["201"]["links"]);
    let created_links = created_links
        .as_object()
        .expect("POST /shorten 201 has links");
    let operation_ids: HashSet<&str> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    for (name, operation_id) in [
        ("redirect", "redirect"),
        ("stats", "stats"),
        ("qr", "qr"),
        ("edit", "editLink"),
        ("delete", "deleteLink"),
    ] {
        let link = resolve(
            created_links
                .get(name)
                .unwrap_or_else(|| panic!("POST /shorten 201 has no `{name}` link")),
        );
        assert_eq!(link["operationId"], operation_id, "link {name}");
        assert_eq!(
            link["parameters"]["code"], "$response.body#/code",
            "link {name}"
        );
    }
    // Every link anywhere in the document names an operation that exists.
    let mut links = vec![document["components"]["links"].clone()];
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(responses) = operation["responses"].as_object() {
                links.extend(
                    responses
                        .values()
                        .map(|response| resolve(response)["links"].clone()),
                );
            }
        }
    }
    let mut named = 0;
    for link in links
        .iter()
        .filter_map(|links| links.as_object())
        .flat_map(|links| links.values())
    {
        let link = resolve(link);
        if let Some(operation_id) = link["operationId"].as_str() {
            named += 1;
            assert!(
                operation_ids.contains(operation_id),
                "a link names operationId {operation_id}, which no operation has"
            );
        }
    }
    assert!(named >= 5);
    app.shutdown().await;
}
