//! The blocklist is read again on SIGHUP, so answering abuse needs no restart; a file that no
//! longer parses leaves the list in force. (A test binary of its own: it signals its own
//! process, whose SIGHUP handler the service registers before it serves.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestApp, eventually, spawn_app};

async fn status_of(app: &TestApp, url: &str) -> u16 {
    app.shorten(&serde_json::json!({ "url": url }).to_string())
        .await
        .status
}

/// The log lines of this process (the service runs in it), kept in memory: a reload says in
/// the log that it ran, even when it changed nothing.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Installs the subscriber that keeps every line from now on.
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    }

    /// How many lines so far say `text`.
    fn saying(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hang_up() {
    // SAFETY: kill(2) on this process; the service's handler is registered (it has answered).
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
}

#[tokio::test]
async fn sighup_reloads_the_blocklist_and_a_broken_file_changes_nothing() {
    let logs = Logs::capture();
    let path = std::env::temp_dir().join(format!("shortener-blocklist-{}", std::process::id()));
    std::fs::write(&path, "evil.example\n").unwrap();
    // Only the signal reloads here (the file watch has a test of its own).
    let app = spawn_app(&[
        "--blocklist-file",
        path.to_str().unwrap(),
        "--blocklist-watch-interval",
        "0s",
    ])
    .await;
    assert_eq!(status_of(&app, "https://evil.example/").await, 400);
    assert_eq!(status_of(&app, "https://later.example/").await, 201);

    std::fs::write(&path, "evil.example\nlater.example # found today\n").unwrap();
    hang_up();
    let blocked = eventually(Duration::from_secs(5), || async {
        status_of(&app, "https://sub.later.example/").await == 400
    })
    .await;
    assert!(blocked, "the reloaded list was not used");

    // A broken file: the list in force stays. Checked once the service says it read the
    // file and refused it, so the reload has run when the list is asked about.
    const REFUSED: &str = "blocklist not reloaded";
    assert_eq!(logs.saying(REFUSED), 0);
    std::fs::write(&path, "this is not a host\n").unwrap();
    hang_up();
    let refused = eventually(Duration::from_secs(5), || async {
        logs.saying(REFUSED) == 1
    })
    .await;
    assert!(refused, "the reload of the broken file was not logged");
    assert_eq!(status_of(&app, "https://later.example/").await, 400);
    assert_eq!(status_of(&app, "https://fine.example/").await, 201);
    app.shutdown().await;
    let _ = std::fs::remove_file(&path);
}
