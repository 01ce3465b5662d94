//! F8: a click flush whose COMMIT succeeded but whose acknowledgement was lost is retried and
//! counts nothing twice. The fault is real: every connection of the service to Postgres goes
//! through a proxy that reads the protocol's messages; armed, it forwards the COMMIT of the next
//! transaction that claimed a click batch (`stats_batches`), waits for Postgres to confirm it,
//! then drops the confirmation and closes the service's connection. The service sees a failed
//! flush, keeps the batch, and writes it again: the batch id it claimed in the committed
//! transaction makes the retry apply nothing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{connect, eventually, fresh_database, scalar, spawn_app_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UPSTREAM: &str = "127.0.0.1:5432";

/// The trap: armed once, it fires on the next flush's COMMIT.
#[derive(Default)]
struct Trap {
    armed: AtomicBool,
    fired: AtomicBool,
}

/// One protocol message from `stream` (after the start-up packet, every message is a type
/// byte and a length that counts itself): the whole message, bytes included.
async fn message(stream: &mut (impl AsyncReadExt + Unpin), typed: bool) -> Option<Vec<u8>> {
    let mut head = vec![0u8; if typed { 5 } else { 4 }];
    stream.read_exact(&mut head).await.ok()?;
    let at = usize::from(typed);
    let length = u32::from_be_bytes(head[at..at + 4].try_into().unwrap()) as usize;
    let mut body = vec![0u8; length.checked_sub(4)?];
    stream.read_exact(&mut body).await.ok()?;
    head.extend_from_slice(&body);
    Some(head)
}

/// The NUL-terminated strings at the start of `bytes`.
fn c_strings(bytes: &[u8]) -> impl Iterator<Item = &str> {
    bytes
        .split(|&b| b == 0)
        .map(|part| std::str::from_utf8(part).unwrap_or_default())
}

/// What a client message runs, as far as the trap cares: a simple query's text (`Q`), a
/// statement prepared (`P`: its name and text), or one bound to run (`B`: its name).
enum Sent<'a> {
    Query(&'a str),
    Prepare { name: &'a str, sql: &'a str },
    Bind { statement: &'a str },
    Other,
}

fn sent(message: &[u8]) -> Sent<'_> {
    let body = &message[5..];
    match message[0] {
        b'Q' => Sent::Query(c_strings(body).next().unwrap_or_default()),
        b'P' => {
            let mut strings = c_strings(body);
            let name = strings.next().unwrap_or_default();
            Sent::Prepare {
                name,
                sql: strings.next().unwrap_or_default(),
            }
        }
        // The portal's name, then the statement's.
        b'B' => Sent::Bind {
            statement: c_strings(body).nth(1).unwrap_or_default(),
        },
        _ => Sent::Other,
    }
}

/// The statement a flush claims its batch id with (storage's `claim_batch`).
const CLAIM: &str = "INSERT INTO stats_batches";

/// Proxies one connection message by message, springing `trap` on a flush's COMMIT.
async fn proxy(mut client: TcpStream, trap: Arc<Trap>) {
    let Ok(mut server) = TcpStream::connect(UPSTREAM).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    // Set when the COMMIT whose answer is to be lost has been sent.
    let swallow = AtomicBool::new(false);
    let upstream = async {
        // The start-up packet has no type byte.
        let Some(startup) = message(&mut client_read, false).await else {
            return;
        };
        if server_write.write_all(&startup).await.is_err() {
            return;
        }
        // Statements prepared on this connection, by name; whether the open transaction
        // claimed a click batch.
        let mut prepared = std::collections::HashMap::<String, String>::new();
        let mut claimed_a_batch = false;
        while let Some(message) = message(&mut client_read, true).await {
            let mut is_commit = false;
            match sent(&message) {
                Sent::Query(sql) => {
                    let sql = sql.trim();
                    if sql.eq_ignore_ascii_case("BEGIN")
                        || sql.eq_ignore_ascii_case("START TRANSACTION")
                    {
                        claimed_a_batch = false;
                    }
                    claimed_a_batch |= sql.contains(CLAIM);
                    is_commit = sql.eq_ignore_ascii_case("COMMIT");
                }
                Sent::Prepare { name, sql } => {
                    prepared.insert(name.to_owned(), sql.to_owned());
                }
                Sent::Bind { statement } => {
                    claimed_a_batch |= prepared
                        .get(statement)
                        .is_some_and(|sql| sql.contains(CLAIM));
                }
                Sent::Other => {}
            }
            let spring = is_commit && claimed_a_batch && trap.armed.swap(false, Ordering::SeqCst);
            if spring {
                swallow.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&message).await.is_err() {
                return;
            }
            if spring {
                // The rest is the downstream's: it drops Postgres' answer, then the connection
                // closes.
                std::future::pending::<()>().await;
            }
        }
    };
    let downstream = async {
        loop {
            // The server's messages are all typed (an SSL answer would be one byte: none is
            // asked for, the URL says sslmode=disable).
            let Some(message) = message(&mut server_read, true).await else {
                return;
            };
            if swallow.load(Ordering::SeqCst) {
                // Everything after the COMMIT is dropped; its ReadyForQuery says Postgres is
                // done with it (committed), and the connection is then closed.
                if message[0] == b'Z' {
                    trap.fired.store(true, Ordering::SeqCst);
                    return;
                }
                continue;
            }
            if client_write.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    // Whichever ends first ends the connection (the service sees it close).
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

#[tokio::test]
async fn a_flush_whose_commit_acknowledgement_is_lost_counts_nothing_twice() {
    let db_url = fresh_database().await;
    assert!(db_url.contains(UPSTREAM), "the proxy expects {UPSTREAM}");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Without TLS, so the proxy reads the protocol (no SSLRequest either).
    let proxied = format!(
        "{}?sslmode=disable",
        db_url.replace(UPSTREAM, &listener.local_addr().unwrap().to_string())
    );
    let trap = Arc::new(Trap::default());
    let accepting = Arc::clone(&trap);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(proxy(client, Arc::clone(&accepting)));
        }
    });
    let app = spawn_app_on(&proxied, &[]).await;
    let code = app.create("https://example.com/lost-commit").await;
    let db = connect(&db_url).await;
    let clicks = || {
        let db = &db;
        async move {
            scalar(
                db,
                "SELECT coalesce(sum(clicks), 0)::bigint FROM link_clicks_daily",
            )
            .await
        }
    };

    trap.armed.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    }
    // The flush committed and lost its answer...
    assert!(
        eventually(Duration::from_secs(10), || async {
            trap.fired.load(Ordering::SeqCst)
        })
        .await,
        "no flush's COMMIT went through the trap"
    );
    assert_eq!(clicks().await, 5, "the trapped COMMIT did not commit");
    // ...so the service took it for failed, and wrote the batch again.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let scrape = app.scrape().await;
            scrape.total("shortener_click_flush_failures_total") >= 1.0
                && scrape.value("shortener_click_batches_pending", &[]) == 0.0
        })
        .await,
        "the lost acknowledgement was not seen as a failure, or the batch was never retried: {}",
        app.scrape().await.text
    );
    // The retry applied nothing: five clicks, counted once.
    assert_eq!(clicks().await, 5);
    let stats = app.get(&format!("/{code}/stats")).await.json();
    assert_eq!(stats["clicks"], 5, "{stats}");
    app.shutdown().await;
}
