//! The logs of the real binary: a database outage logged with its cause and not as a storm,
//! a request's lines and its answer naming the same request id, the access log, and the two
//! log formats. Each test runs `shortener serve` as a child process and reads its stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A loopback address nothing listens on.
fn closed_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn free_address() -> SocketAddr {
    closed_address()
}

/// `shortener serve` against a database that is not there, with `extra` variables.
fn serve_without_database(extra: &[(&str, &str)]) -> (Child, SocketAddr, String) {
    let database = closed_address();
    let listen = free_address();
    let mut command = Command::new(env!("CARGO_BIN_EXE_shortener"));
    command
        .env_clear()
        .arg("serve")
        .env("DATABASE_URL", format!("postgres://postgres@{database}/x"))
        .env("SHORTENER_LISTEN", listen.to_string())
        .env("SHORTENER_ADMIN_LISTEN", free_address().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in extra {
        command.env(name, value);
    }
    (command.spawn().unwrap(), listen, database.to_string())
}

/// One request on a connection of its own; answers the status and the `X-Request-Id`.
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    // The child may still be starting: its listener is bound only after configuration.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(address) {
            Ok(stream) => break stream,
            Err(error) if Instant::now() > deadline => panic!("{address}: {error}"),
            // The pause of a bounded poll for the port (the condition is the connect).
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: sho.rt\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let request_id = answer
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, request_id)
}

/// Stops the child as SIGTERM would, and answers its stderr as JSON lines.
fn stop(child: Child) -> Vec<Value> {
    // SAFETY: kill(2) on our own child; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("not a JSON log line: {line}\n{stderr}"))
        })
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

fn lines_saying<'a>(lines: &'a [Value], text: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| message(line).contains(text))
        .collect()
}

#[test]
fn a_database_outage_is_logged_with_its_cause_and_not_as_a_storm() {
    let (child, listen, database) = serve_without_database(&[]);
    // Each pool retries several times a second, and every lookup fails, for three seconds.
    let started = Instant::now();
    let mut ids = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let (status, id) = get(listen, "/somecode");
        assert_eq!(status, 503);
        ids.push(id);
    }
    let lines = stop(child);
    let failures = lines_saying(&lines, "postgres connection failed");
    assert!(!failures.is_empty(), "{lines:?}");
    for line in &failures {
        let error = line["fields"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("Connection refused"), "no cause: {line}");
        assert_eq!(line["fields"]["server"], database.as_str(), "{line}");
    }
    // The first failure of each pool (read, write, background, lease, readiness), then
    // nothing for ten seconds.
    assert!(
        failures.len() <= 5,
        "{} lines: {failures:?}",
        failures.len()
    );
    // Every failed lookup is answered 503, but only the first is logged, in its request.
    assert!(ids.len() >= 3, "only {} requests were answered", ids.len());
    let lookups = lines_saying(&lines, "link lookup: database unavailable");
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    let request_id = lookups[0]["span"]["request_id"]
        .as_str()
        .unwrap_or_default();
    assert!(
        ids.iter().any(|id| id == request_id),
        "{lookups:?} vs {ids:?}"
    );
    // No warning or error without its cause (the development-key warning has none to give).
    for line in &lines {
        let level = line["level"].as_str().unwrap_or_default();
        if (level == "WARN" || level == "ERROR") && !message(line).contains("SHORTENER_CODE_KEY") {
            assert!(
                line["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty()),
                "a {level} line without its cause: {line}"
            );
        }
    }
}

#[test]
fn the_access_log_names_each_request_by_its_id_and_never_a_target_url() {
    let (child, listen, _) = serve_without_database(&[("SHORTENER_ACCESS_LOG", "all")]);
    let (openapi, openapi_id) = get(listen, "/openapi.json");
    let (redirect, redirect_id) = get(listen, "/somecode");
    assert_eq!((openapi, redirect), (200, 503));
    let lines = stop(child);
    let access: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "access")
        .collect();
    assert_eq!(access.len(), 2, "{access:?}");
    let fields = |id: &str| {
        access
            .iter()
            .find(|line| line["fields"]["request_id"] == id)
            .map(|line| &line["fields"])
            .unwrap_or_else(|| panic!("no access line for {id}: {access:?}"))
    };
    assert_eq!(fields(&openapi_id)["route"], "/openapi.json");
    assert_eq!(fields(&openapi_id)["status"], 200);
    assert_eq!(fields(&redirect_id)["route"], "/{code}");
    assert_eq!(fields(&redirect_id)["status"], 503);
    assert_eq!(fields(&redirect_id)["method"], "GET");
    assert!(fields(&redirect_id)["duration_us"].as_u64().is_some());
    // Exactly these fields: no path (with its code), no target URL.
    for line in &access {
        let mut names: Vec<&str> = line["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "client",
                "duration_us",
                "message",
                "method",
                "request_id",
                "route",
                "status"
            ],
            "{line}"
        );
    }
}

#[test]
fn the_errors_access_log_names_only_5xx_answers() {
    let (child, listen, _) = serve_without_database(&[("SHORTENER_ACCESS_LOG", "errors")]);
    assert_eq!(get(listen, "/openapi.json").0, 200);
    assert_eq!(get(listen, "/a/b").0, 404);
    let (status, id) = get(listen, "/somecode");
    assert_eq!(status, 503);
    let lines = stop(child);
    let access: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "access")
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["fields"]["request_id"], id.as_str());
}

#[test]
fn text_logs_on_request_and_a_bad_format_refused_naming_the_variable() {
    let database = closed_address();
    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .arg("migrate")
        .env("DATABASE_URL", format!("postgres://postgres@{database}/x"))
        .env("SHORTENER_MIGRATE_WAIT", "1s")
        .env("SHORTENER_LOG_FORMAT", "text")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("ERROR") && stderr.contains("migration failed"),
        "{stderr}"
    );
    assert!(!stderr.trim_start().starts_with('{'), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .arg("serve")
        .env("DATABASE_URL", format!("postgres://postgres@{database}/x"))
        .env("SHORTENER_LOG_FORMAT", "xml")
        .env("SHORTENER_ACCESS_LOG", "some")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SHORTENER_LOG_FORMAT") && stderr.contains("SHORTENER_ACCESS_LOG"),
        "{stderr}"
    );
}

#[test]
fn a_sampled_access_log_still_names_every_5xx() {
    let (child, listen, _) = serve_without_database(&[
        ("SHORTENER_ACCESS_LOG", "all"),
        ("SHORTENER_ACCESS_LOG_SAMPLE", "0.000001"),
    ]);
    for _ in 0..20 {
        assert_eq!(get(listen, "/openapi.json").0, 200);
    }
    let (status, id) = get(listen, "/somecode");
    assert_eq!(status, 503);
    let lines = stop(child);
    let access: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "access")
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["fields"]["request_id"], id.as_str());
}
