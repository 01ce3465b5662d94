//! The architecture invariants of ARCHITECTURE.md, checked mechanically over `src/` (as
//! rust-analyzer's `tidy.rs` does): which layer may name which crate, and where SQL text
//! may live. A failure names the file and line that broke a rule.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its path relative to the repository root.
fn source_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, text)
        })
        .collect()
}

/// Lines of code: comments (`//`, `///`, `//!`) are prose and may name anything.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
}

/// Whether `line` names the crate `name` (`name::…`), not a module of ours of that name
/// (`crate::name::…`, `super::name::…`) or a longer identifier (`my_name::…`).
fn names_crate(line: &str, name: &str) -> bool {
    let pattern = format!("{name}::");
    line.match_indices(&pattern).any(|(at, _)| {
        line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
    })
}

/// Checks that only files under one of `allowed` name `crate_name`; answers the violations.
fn crate_confined_to(crate_name: &str, allowed: &[&str]) -> Vec<String> {
    let mut violations = Vec::new();
    for (path, text) in source_files() {
        if allowed.iter().any(|prefix| path.starts_with(prefix)) {
            continue;
        }
        for (number, line) in code_lines(&text) {
            if names_crate(line, crate_name) {
                violations.push(format!("{path}:{number}: {}", line.trim()));
            }
        }
    }
    violations
}

fn assert_none(rule: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{rule}; broken at:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn only_http_knows_hyper() {
    let mut violations = crate_confined_to("hyper", &["src/http/"]);
    violations.extend(crate_confined_to("hyper_util", &["src/http/"]));
    violations.extend(crate_confined_to("http_body_util", &["src/http/"]));
    assert_none("hyper types only under src/http", violations);
}

#[test]
fn the_http_crates_value_types_stay_near_the_edge() {
    // `HeaderValue` and `StatusCode` are plain values: `links` caches a ready `Location`,
    // `app` and `config` hold the configured status and headers. Nothing below uses them.
    let allowed = ["src/http/", "src/links/", "src/config/", "src/startup.rs"];
    assert_none(
        "the http crate only in http, links, app and config",
        crate_confined_to("http", &allowed),
    );
}

#[test]
fn only_storage_talks_to_postgres() {
    let mut violations = crate_confined_to("tokio_postgres", &["src/storage/"]);
    violations.extend(crate_confined_to("bb8", &["src/storage/"]));
    violations.extend(crate_confined_to("bb8_postgres", &["src/storage/"]));
    violations.extend(crate_confined_to("refinery", &["src/storage/"]));
    assert_none("the Postgres driver only under src/storage", violations);
}

#[test]
fn only_the_redis_module_uses_the_redis_client() {
    assert_none(
        "the Redis client (fred) only in src/storage/redis",
        crate_confined_to("fred", &["src/storage/redis"]),
    );
}

#[test]
fn sql_text_lives_only_in_storage() {
    const SQL: [&str; 8] = [
        "SELECT ",
        "INSERT INTO",
        "DELETE FROM",
        "UPDATE ",
        "ON CONFLICT",
        "CREATE TABLE",
        "ALTER TABLE",
        "LOCK TABLE",
    ];
    let mut violations = Vec::new();
    for (path, text) in source_files() {
        if path.starts_with("src/storage/") {
            continue;
        }
        for (number, line) in code_lines(&text) {
            if line.contains('"') && SQL.iter().any(|keyword| line.contains(keyword)) {
                violations.push(format!("{path}:{number}: {}", line.trim()));
            }
        }
    }
    assert_none("SQL text only under src/storage", violations);
}

#[test]
fn domain_and_ids_do_no_io() {
    let pure = ["src/domain/", "src/ids/"];
    let mut violations = Vec::new();
    for (path, text) in source_files() {
        if !pure.iter().any(|prefix| path.starts_with(prefix)) {
            continue;
        }
        for (number, line) in code_lines(&text) {
            let io = [
                "tokio",
                "std::fs",
                "std::net::Tcp",
                "std::io",
                "crate::storage",
            ]
            .iter()
            .any(|name| line.contains(name));
            if io {
                violations.push(format!("{path}:{number}: {}", line.trim()));
            }
        }
    }
    assert_none("domain and ids do no I/O", violations);
}

#[test]
fn the_links_layer_sees_neither_hyper_nor_sql() {
    // Covered by the rules above; stated on its own because it is the layering rule.
    let links: Vec<_> = source_files()
        .into_iter()
        .filter(|(path, _)| path.starts_with("src/links/"))
        .collect();
    assert!(!links.is_empty(), "src/links is missing");
    for (path, text) in links {
        for (number, line) in code_lines(&text) {
            assert!(
                !names_crate(line, "hyper") && !names_crate(line, "tokio_postgres"),
                "{path}:{number}: {line}"
            );
        }
    }
}

#[test]
fn every_module_says_what_it_owns() {
    let undocumented: Vec<_> = source_files()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert_none("every source file starts with a //! line", undocumented);
}

#[test]
fn the_rules_catch_what_they_are_meant_to() {
    assert!(names_crate("use hyper::body::Incoming;", "hyper"));
    assert!(names_crate("    let x: hyper::Request<()>;", "hyper"));
    assert!(!names_crate("use crate::http::{ApiError};", "http"));
    assert!(!names_crate("use super::http::x;", "http"));
    assert!(!names_crate("let a = my_http::x;", "http"));
    assert!(names_crate("use http::HeaderValue;", "http"));
    assert!(names_crate("(http::StatusCode::OK)", "http"));
}
