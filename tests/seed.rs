//! `shortener seed` (hidden; load tests): links written with COPY under a leased worker id,
//! their codes the ones the service makes with the same key, so the service serves them.

mod common;

use std::process::Command;

use common::{fresh_database, scalar, spawn_app_on};

#[tokio::test]
async fn seeded_links_are_served_by_a_service_with_the_same_key() {
    let db_url = fresh_database().await;
    let codes_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("seed-codes-{}.txt", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .args(["seed", "--links", "2500", "--codes-out"])
        .arg(&codes_file)
        .env("DATABASE_URL", &db_url)
        .env("SHORTENER_CODE_KEY", "integration-test-code-key")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let codes: Vec<String> = std::fs::read_to_string(&codes_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    std::fs::remove_file(&codes_file).unwrap();
    assert_eq!(codes.len(), 2500);
    let db = common::connect(&db_url).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM links").await, 2500);
    assert_eq!(
        scalar(&db, "SELECT count(DISTINCT code) FROM links").await,
        2500
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM links WHERE length(target_url) <> 60"
        )
        .await,
        0
    );
    // The lease was given back.
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM worker_leases WHERE expires_at > now()"
        )
        .await,
        0
    );

    let app = spawn_app_on(&db_url, &[]).await;
    for code in [&codes[0], &codes[1234], &codes[2499]] {
        let answer = app.get(&format!("/{code}")).await;
        assert_eq!(answer.status, 302, "{code}");
        assert!(
            answer
                .header("location")
                .is_some_and(|location| location.starts_with("https://example.com/seeded/")),
            "{:?}",
            answer.headers
        );
    }
    app.shutdown().await;
}
