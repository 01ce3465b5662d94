//! B1's last criterion: the hostile URL corpus is refused without a single line logged at error
//! level (a refused input is the client's mistake, not the service's). A test binary of its own:
//! it reads every line its process logs.

mod common;

use common::logs::Logs;
use common::spawn_app;

#[tokio::test]
async fn the_hostile_url_corpus_logs_nothing_at_error_level() {
    let logs = Logs::capture();
    // An error-level line is captured when there is one.
    tracing::error!("a line at error level, to show the capture sees one");
    assert_eq!(logs.at_level("ERROR").len(), 1);

    let blocklist = common::blocklist_file("blocked.example\n");
    let app = spawn_app(&["--blocklist-file", blocklist.to_str().unwrap()]).await;
    common::assert_hostile_urls_refused(&app).await;
    app.shutdown().await;
    let _ = std::fs::remove_file(blocklist);
    let errors = logs.at_level("ERROR");
    assert_eq!(errors.len(), 1, "logged at error level: {errors:#?}");
}
