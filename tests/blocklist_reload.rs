//! The blocklist is read again on SIGHUP, so answering abuse needs no restart; a file that no
//! longer parses leaves the list in force. (A test binary of its own: it signals its own
//! process, whose SIGHUP handler the service registers before it serves.)

mod common;

use std::time::Duration;

use common::logs::Logs;
use common::{eventually, spawn_app};

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
    assert_eq!(app.create_status("https://evil.example/").await, 400);
    assert_eq!(app.create_status("https://later.example/").await, 201);

    std::fs::write(&path, "evil.example\nlater.example # found today\n").unwrap();
    hang_up();
    let blocked = eventually(Duration::from_secs(5), || async {
        app.create_status("https://sub.later.example/").await == 400
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
    assert_eq!(app.create_status("https://later.example/").await, 400);
    assert_eq!(app.create_status("https://fine.example/").await, 201);
    app.shutdown().await;
    let _ = std::fs::remove_file(&path);
}
