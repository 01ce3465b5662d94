//! The faults a fleet meets that docs/requirements.md does not list, each with its criterion
//! (docs/reliability.md, "Beyond the list"): a rolling restart under load, file-descriptor
//! exhaustion, thousands of open connections, memory after a connection flood, a Postgres that
//! stops answering without closing, a reconnect storm against a small `max_connections`, Redis
//! Cluster resharding under load. The service runs as a child process (tests/support/service.rs)
//! under the open-loop load of tests/support/load.rs; `make fault` runs these at a tenth of the
//! rate, `make soak` at the full rate against the release binary.

mod common;
#[path = "support/load.rs"]
mod load;
#[path = "support/processes.rs"]
mod processes;
#[path = "support/scenario.rs"]
mod scenario;
#[path = "support/service.rs"]
mod service;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{ListenerSockets, connect, eventually, scalar};
use load::{Load, Request, Targets};
use processes::{OwnCluster, OwnPostgres, OwnRedis};
use scenario::{
    FULL_RATE, PgProxy, connections, database_on, failures, old_links, primary_with_replica, scale,
    secs, soak, warm,
};
use service::Service;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn a_rolling_restart_under_load_fails_nothing_for_a_client_that_retries_once() {
    let db_url = common::fresh_database().await;
    let start = || Service::start(&db_url, &[]);
    let mut instances: Vec<Service> = (0..3).map(|_| start()).collect();
    for instance in &instances {
        instance.ready().await;
    }
    let codes = Arc::new(old_links(&db_url, "rolling", 1_000).await);
    let targets = Targets::new(instances.iter().map(|instance| instance.addr).collect());
    let rate = FULL_RATE * scale();
    let run = secs(40, 16);
    // Redirects, and one create in 20 with an Idempotency-Key (so it may be sent again).
    let load = Load::start(targets.clone(), rate, run, connections(rate), {
        let codes = Arc::clone(&codes);
        move |i| {
            if i % 20 == 0 {
                Request::create_once(
                    "create",
                    &format!("https://example.com/created-rolling/{i}"),
                    &format!("rolling-{i}"),
                )
            } else {
                Request::get("redirect", &format!("/{}", codes[i as usize % codes.len()]))
            }
        }
    });
    // One at a time: a new instance is started and made ready, takes the old one's place
    // among the targets, and the old one gets SIGTERM at that same moment (as Kubernetes
    // removes an endpoint while it signals the pod): its keep-alive connections close under
    // clients that may be sending on them.
    let mut exits = Vec::new();
    for turn in 0..3 {
        load.until(secs(10, 3) * (turn + 1)).await;
        let replacement = start();
        replacement.ready().await;
        let old = instances.remove(0);
        instances.push(replacement);
        targets.set(instances.iter().map(|instance| instance.addr).collect());
        let status = tokio::task::block_in_place(|| old.terminate(Duration::from_secs(15)));
        exits.push(status);
    }
    let record = load.finish().await;

    assert!(exits.iter().all(|status| status.success()), "{exits:?}");
    assert_eq!(
        failures(&record, &[302, 201]),
        0,
        "a request failed across the restarts: {}",
        record.summary()
    );
    let retried = record.filter(|answer| answer.retried).len();
    assert!(
        retried > 0,
        "no connection closed under the client: the restarts were not seen ({})",
        record.summary()
    );
    let created = record.of("create").with_status(201) as i64;
    let stored = scalar(
        &connect(&db_url).await,
        "SELECT count(*) FROM links WHERE target_url LIKE 'https://example.com/created-rolling/%'",
    )
    .await;
    assert_eq!(stored, created, "a create sent again made a second link");
    println!(
        "rolling restart at {rate}/s for {run:?}: {}",
        record.summary()
    );
}

/// The descriptors `pid` has open.
fn open_descriptors(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process runs")
        .count() as u64
}

/// Sets `pid`'s soft limit on open descriptors (its hard limit kept).
fn limit_descriptors(pid: i32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) on our own child, with valid pointers to stack values.
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) },
        0
    );
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) },
        0
    );
}

/// CPU time `pid` has used so far (user + system).
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// The address of client `n` of 25 (127.0.0.2 to 127.0.0.26), for floods that look like many
/// clients to the per-client connection cap.
fn client(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (n % 25) as u8)
}

/// A connection from `source` (any 127.0.0.0/8 address) to `to`.
async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `GET /{code}` on `stream` and reads one answer: its status (0: none within `within`).
async fn redirect_on(stream: &mut TcpStream, code: &str, within: Duration) -> u16 {
    let request = format!("GET /{code} HTTP/1.1\r\nHost: sho.rt\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    read_answer(stream, within).await
}

/// Reads one answer: its status, 0 when none came within `within`.
async fn read_answer(stream: &mut TcpStream, within: Duration) -> u16 {
    let mut buffer = Vec::new();
    match tokio::time::timeout(within, load::read_answer(stream, &mut buffer)).await {
        Ok(Ok((status, _, _))) => status,
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn out_of_descriptors_it_backs_off_and_keeps_serving_the_connections_it_has() {
    let db_url = common::fresh_database().await;
    let service = Service::start(&db_url, &[]);
    service.ready().await;
    let codes = old_links(&db_url, "descriptors", 10).await;
    warm(&service, &codes).await;
    // Room for 40 descriptors more than it holds now; 100 clients come.
    let pid = service.pid();
    limit_descriptors(pid, open_descriptors(pid) + 40);
    let mut clients = Vec::new();
    for n in 0..100 {
        let mut stream = TcpStream::connect(service.addr).await.unwrap();
        let request = format!(
            "GET /{} HTTP/1.1\r\nHost: sho.rt\r\n\r\n",
            codes[n % codes.len()]
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        clients.push(stream);
    }
    // Those it could accept are answered; the rest wait in the kernel's queue.
    let mut reads = tokio::task::JoinSet::new();
    for mut stream in clients {
        reads.spawn(async move {
            let status = read_answer(&mut stream, Duration::from_secs(1)).await;
            (status, stream)
        });
    }
    let (mut answered, mut waiting) = (Vec::new(), Vec::new());
    while let Some(read) = reads.join_next().await {
        match read.unwrap() {
            (302, stream) => answered.push(stream),
            (0, stream) => waiting.push(stream),
            (status, _) => panic!("answered {status}"),
        }
    }
    assert!(
        !answered.is_empty() && !waiting.is_empty(),
        "{} answered, {} waiting",
        answered.len(),
        waiting.len()
    );
    let sockets = ListenerSockets::of(service.addr);
    assert!(sockets.accept_queue > 0, "{sockets:?}");
    assert!(
        service.logged("accept failed"),
        "the exhaustion was not logged"
    );
    // It backs off instead of spinning on the failing accept: while out of descriptors, it
    // uses a fraction of a core.
    let (before, started) = (cpu_time(pid), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time(pid) - before;
    assert!(
        used.as_secs_f64() < started.elapsed().as_secs_f64() * 0.25,
        "{used:?} of CPU in {:?} out of descriptors",
        started.elapsed()
    );
    // The connections it holds are served all along.
    for stream in &mut answered {
        for code in &codes[..3] {
            let status = redirect_on(stream, code, Duration::from_secs(5)).await;
            assert_eq!(status, 302, "{}", service.log.lock().unwrap());
        }
    }
    // Once they close, the waiting ones are accepted and answered.
    let freed = answered.len();
    drop(answered);
    let mut served = 0;
    for stream in &mut waiting {
        if read_answer(stream, Duration::from_secs(10)).await == 302 {
            served += 1;
        }
        if served == freed {
            break;
        }
    }
    assert!(
        served > 0,
        "no waiting connection was served once others closed"
    );
    limit_descriptors(pid, 20_000);
    drop(waiting);
    let mut fresh = TcpStream::connect(service.addr).await.unwrap();
    assert_eq!(
        redirect_on(&mut fresh, &codes[0], Duration::from_secs(10)).await,
        302
    );
    let errors = service.lines_at("ERROR");
    assert!(errors.is_empty(), "{errors:?}");
}

/// `count` connections from 25 loopback addresses (as many clients), each with one redirect
/// answered and kept open.
async fn open_connections(service: &Service, code: &str, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for n in 0..count {
        streams.push(connect_from(client(n), service.addr).await);
    }
    let request = format!("GET /{code} HTTP/1.1\r\nHost: sho.rt\r\n\r\n");
    for stream in &mut streams {
        stream.write_all(request.as_bytes()).await.unwrap();
    }
    for stream in &mut streams {
        assert_eq!(read_answer(stream, Duration::from_secs(20)).await, 302);
    }
    streams
}

/// Resident memory a service may use for each open connection.
const PER_CONNECTION: u64 = 24 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn five_thousand_open_connections_hold_bounded_memory() {
    let db_url = common::fresh_database().await;
    // The production cap per client: 25 clients of 200 connections each stay under it.
    let service = Service::start(&db_url, &[("SHORTENER_MAX_CONNECTIONS_PER_PEER", "256")]);
    service.ready().await;
    let codes = old_links(&db_url, "connections", 1).await;
    warm(&service, &codes).await;
    let before = service.rss();
    let streams = open_connections(&service, &codes[0], 5_000).await;
    assert!(ListenerSockets::of(service.addr).accepted() >= 5_000);
    let open = service.rss();
    assert!(
        open < before + 5_000 * PER_CONNECTION,
        "5,000 connections took resident memory from {before} to {open} bytes ({} a connection)",
        (open.saturating_sub(before)) / 5_000
    );
    drop(streams);
    println!(
        "5,000 connections: RSS {before} -> {open} bytes, {} a connection",
        open.saturating_sub(before) / 5_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn after_a_connection_flood_memory_returns_within_thirty_seconds() {
    let db_url = common::fresh_database().await;
    let service = Service::start(&db_url, &[("SHORTENER_MAX_CONNECTIONS_PER_PEER", "256")]);
    service.ready().await;
    let codes = old_links(&db_url, "flood", 100).await;
    warm(&service, &codes).await;
    // Steady before the flood: a short load of redirects.
    let rate = FULL_RATE * scale();
    let codes = Arc::new(codes);
    let steady = Arc::clone(&codes);
    let record = Load::start(
        service.addr,
        rate,
        Duration::from_secs(2),
        connections(rate),
        move |i| {
            Request::get(
                "redirect",
                &format!("/{}", steady[i as usize % steady.len()]),
            )
        },
    )
    .finish()
    .await;
    assert_eq!(failures(&record, &[302]), 0, "{}", record.summary());
    let before = service.rss();

    // 5,000 half-sent creates from 25 clients: the head and half the body, the rest never.
    let mut flood = Vec::with_capacity(5_000);
    for n in 0..5_000 {
        let mut stream = connect_from(client(n), service.addr).await;
        let body = format!(r#"{{"url": "https://example.com/{}"}}"#, "a".repeat(4_000));
        let head = format!(
            "POST /shorten HTTP/1.1\r\nHost: sho.rt\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(&body.as_bytes()[..body.len() / 2])
            .await
            .unwrap();
        flood.push(stream);
    }
    let read = eventually(Duration::from_secs(10), || async {
        let sockets = ListenerSockets::of(service.addr);
        sockets.accepted() >= 5_000 && sockets.established.iter().all(|side| side.unread == 0)
    })
    .await;
    assert!(
        read,
        "the flood was not read: {:?}",
        ListenerSockets::of(service.addr).accept_queue
    );
    let peak = service.rss();
    assert!(
        peak > before + before / 5,
        "the flood did not grow memory past the bound ({before} -> {peak}): the test shows nothing"
    );
    drop(flood);
    let closed = eventually(Duration::from_secs(10), || async {
        ListenerSockets::of(service.addr).established.is_empty()
    })
    .await;
    assert!(closed);
    let closed_at = std::time::Instant::now();
    let returned = eventually(Duration::from_secs(30), || async {
        service.rss() <= before + before / 5
    })
    .await;
    let after = service.rss();
    assert!(
        returned,
        "resident memory {before} before the flood, {peak} at its peak, still {after} 30 s after it"
    );
    // And it serves as before.
    let again = Arc::clone(&codes);
    let record = Load::start(
        service.addr,
        rate,
        Duration::from_secs(1),
        connections(rate),
        move |i| Request::get("redirect", &format!("/{}", again[i as usize % again.len()])),
    )
    .finish()
    .await;
    assert_eq!(failures(&record, &[302]), 0, "{}", record.summary());
    println!(
        "flood of 5,000 half-sent creates: RSS {before} before, {peak} at its peak, {after} after {:?}",
        closed_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn a_primary_that_stops_answering_is_left_for_the_promoted_replica() {
    let (primary, replica, db_url) = primary_with_replica().await;
    // The service reaches its primary through an address that moves (a virtual IP, a DNS
    // name): the proxy.
    let proxy = PgProxy::start(&db_url).await;
    let service = Service::start(
        &proxy.url,
        &[
            ("SHORTENER_DB_ACQUIRE_TIMEOUT", "250ms"),
            ("SHORTENER_DB_STATEMENT_TIMEOUT", "1s"),
        ],
    );
    service.ready().await;
    let cached = old_links(&db_url, "held", 200).await;
    warm(&service, &cached).await;
    let rate = FULL_RATE * scale();
    let (run, silent_at, promoted_at) = (secs(40, 20), secs(10, 4), secs(20, 8));
    let uncached = old_links(
        &db_url,
        "read",
        (rate * run.as_secs_f64() * 0.2) as usize + 1,
    )
    .await;
    common::wait_for_replay(&primary.url("postgres"), &replica.url("postgres")).await;

    // Of every 20: two creates, four codes not in memory (read from the primary), 14 held.
    // Connections enough for every request due while the primary is silent to be waiting at
    // once (each up to its call's bound): the client is not what holds them back.
    let load = Load::start(service.addr, rate, run, 1_024, move |i| {
        let n = i as usize;
        match n % 20 {
            0 | 1 => Request::create("create", &format!("https://example.com/silent/{i}")),
            2..=5 => Request::get(
                "uncached",
                &format!("/{}", uncached[n / 20 * 4 + n % 20 - 2]),
            ),
            _ => Request::get("cached", &format!("/{}", cached[n % cached.len()])),
        }
    });
    load.until(silent_at).await;
    // The primary stops answering: every connection to it stays open and silent.
    proxy.silence();
    load.until(promoted_at).await;
    tokio::task::block_in_place(|| replica.promote());
    proxy.point_at(&replica.url("shortener"));
    let moved = load.elapsed();
    let record = load.finish().await;

    assert_eq!(
        record.with_status(0),
        0,
        "a request hung: {}",
        record.summary()
    );
    let cached = record.of("cached");
    assert_eq!(failures(&cached, &[302]), 0, "{}", cached.summary());
    for kind in ["create", "uncached"] {
        let answers = record.of(kind);
        assert_eq!(
            failures(&answers, &[201, 302, 503]),
            0,
            "{kind}: {}",
            answers.summary()
        );
        let shed = answers.filter(|answer| answer.status == 503);
        assert!(
            shed.answers.iter().all(|answer| answer.retry_after),
            "{kind}: 503 without Retry-After"
        );
        let silent = answers.due_between(silent_at, promoted_at);
        assert!(
            silent.with_status(503) > 0,
            "{kind}: the silence was not seen: {}",
            silent.summary()
        );
        // Once the address leads to the new primary, within the bound every call works again:
        // no connection to the silent one is reused.
        let after = answers.due_between(moved + Duration::from_secs(5), run);
        assert!(after.len() > 0);
        assert_eq!(
            after.other_than(&[201, 302]),
            0,
            "{kind} still failing 5 s after the move ({moved:?}): {}",
            after.summary()
        );
    }
    if soak() {
        // Each waits at most its place in the writer's queue (the acquire timeout) and one
        // call's bound (acquire timeout + statement timeout + 0.5 s), and a little.
        let creates = record.of("create");
        assert!(
            creates.quantile(1.0) <= Duration::from_millis(250 + 250 + 1_000 + 500 + 250),
            "a create waited longer than its bounds: {}",
            creates.summary()
        );
    }
    println!(
        "primary silent at {silent_at:?}, replica promoted and the address moved at {moved:?}: {}; creates {}; not in memory {}",
        record.summary(),
        record.of("create").summary(),
        record.of("uncached").summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn a_reconnect_storm_against_a_small_max_connections_is_backed_off_and_logged_once() {
    // A Postgres of its own that takes 20 connections, behind a proxy that counts them.
    let server = OwnPostgres::init();
    server.configure(&[
        ("max_connections", "20"),
        ("superuser_reserved_connections", "0"),
    ]);
    server.start_again();
    let db_url = database_on(&server).await;
    let proxy = PgProxy::start(&db_url).await;
    let codes = Arc::new(old_links(&db_url, "storm", 20_000).await);
    // Four instances that would each keep 8 connections open from the start (two warm in
    // each request pool, the lease's, the probe's) and open up to 28: more than it takes.
    let storm_started = std::time::Instant::now();
    let instances: Vec<Service> = (0..4)
        .map(|_| Service::start(&proxy.url, &[("SHORTENER_DB_ACQUIRE_TIMEOUT", "250ms")]))
        .collect();
    // Each gets some of the server's places, none all it would keep. The lease and the probes
    // share the request pools' connections when their own cannot be opened, so an instance
    // that holds any place leases and becomes ready; one that got none waits, not ready (its
    // load balancer sends it nothing), until a place frees.
    let ready_now = || async {
        let mut ready = Vec::new();
        for instance in &instances {
            if matches!(instance.readiness().await, Some((200, _))) {
                ready.push(instance.addr);
            }
        }
        ready
    };
    let up = eventually(Duration::from_secs(20), || async {
        ready_now().await.len() == instances.len()
    })
    .await;
    let ready = ready_now().await;
    println!("{} of 4 ready (all: {up})", ready.len());
    assert!(ready.len() >= 2, "{} of 4 instances ready", ready.len());
    let targets = Targets::new(ready.clone());
    let rate = FULL_RATE * scale();
    let run = secs(30, 12);
    let load = Load::start(targets, rate, run, connections(rate), {
        let codes = Arc::clone(&codes);
        move |i| {
            if i % 20 == 0 {
                Request::create("create", &format!("https://example.com/storm/{i}"))
            } else {
                Request::get("redirect", &format!("/{}", codes[i as usize % codes.len()]))
            }
        }
    });
    let record = load.finish().await;
    let attempts = proxy.connections();
    let started = storm_started.elapsed();

    // Refused connections are a transient failure: 503 with Retry-After, never a 500.
    assert_eq!(
        failures(&record, &[302, 201, 503]),
        0,
        "{}",
        record.summary()
    );
    let shed = record.filter(|answer| answer.status == 503);
    assert!(shed.answers.iter().all(|answer| answer.retry_after));
    let refused: Vec<usize> = instances
        .iter()
        .map(|instance| {
            instance
                .log
                .lock()
                .unwrap()
                .lines()
                .filter(|line| line.contains("too many clients") || line.contains("53300"))
                .count()
        })
        .collect();
    assert!(
        refused.iter().sum::<usize>() > 0,
        "the server's limit was never met: the test shows nothing"
    );
    println!(
        "reconnect storm: 4 instances, max_connections 20, {rate}/s for {run:?}: {} connections \
         opened; refusals logged {refused:?}; {}",
        attempts,
        record.summary()
    );
    // Backed off: each of the 20 pools (five an instance) tries a refused server at most a
    // few times in its first second, then once every 2 s; one connect per request would be
    // thousands.
    let bound = 20 * (started.as_secs() / 2 + 5);
    assert!(
        attempts <= bound,
        "{attempts} connections tried in {started:?} (at most {bound})"
    );
    for instance in &instances {
        let errors = instance.lines_at("ERROR");
        assert!(errors.is_empty(), "{errors:?}");
        // Logged once, then once per interval with the count of those not logged: for each
        // of its five pools, at most one line every 10 s.
        let lines = instance
            .log
            .lock()
            .unwrap()
            .lines()
            .filter(|line| line.contains("postgres connection failed"))
            .count();
        assert!(
            lines <= 5 * (run.as_secs() as usize / 10 + 2),
            "{lines} lines of refused connections"
        );
        assert!(
            instance.readiness().await.is_some(),
            "an instance stopped answering"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn redis_cluster_resharding_and_a_node_added_under_load_fail_nothing() {
    let mut cluster = OwnCluster::start();
    let db_url = common::fresh_database().await;
    let env = [
        ("REDIS_CLUSTER_NODES", cluster.seeds()),
        ("SHORTENER_REDIS_COMMAND_TIMEOUT", "250ms".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rate = FULL_RATE * scale();
    let run = secs(60, 30);
    // Every code read once, from Redis: another instance filled them all in first.
    let count = (rate * run.as_secs_f64()) as usize + 1;
    let codes = Arc::new(old_links(&db_url, "resharded", count).await);
    {
        let filler = Service::start(&db_url, &env);
        filler.ready().await;
        let fill = Arc::clone(&codes);
        let record = Load::start(
            filler.addr,
            2_000.0,
            Duration::from_secs_f64(count as f64 / 2_000.0),
            64,
            move |i| Request::get("fill", &format!("/{}", fill[i as usize])),
        )
        .finish()
        .await;
        assert_eq!(failures(&record, &[302]), 0, "{}", record.summary());
    }
    let service = Service::start(&db_url, &env);
    service.ready().await;
    let read = Arc::clone(&codes);
    let load = Load::start(service.addr, rate, run, connections(rate), move |i| {
        if i % 20 == 0 {
            Request::create("create", &format!("https://example.com/resharded/{i}"))
        } else {
            Request::get("redirect", &format!("/{}", read[i as usize]))
        }
    });
    // A third of one master's slots move to another, key by key; then a fourth master joins
    // and takes slots from a third.
    load.until(secs(5, 3)).await;
    let masters = cluster.masters();
    tokio::task::block_in_place(|| cluster.reshard(masters[0], masters[1], 1_800));
    let moved = load.elapsed();
    let added = tokio::task::block_in_place(|| {
        let added = cluster.add_master();
        cluster.reshard(masters[2], added, 1_200);
        added
    });
    let joined = load.elapsed();
    let record = load.finish().await;

    assert_eq!(
        failures(&record, &[302, 201]),
        0,
        "a request failed while slots moved: {}",
        record.summary()
    );
    let scrape = service.scrape().await;
    let redirects = record.of("redirect").len() as f64;
    let from_redis = scrape.value("shortener_link_resolutions_total", &[("outcome", "redis")]);
    let errors = scrape.total("shortener_redis_errors_total");
    // The client followed every ASK and MOVED: Redis answered the reads, not Postgres.
    assert!(
        from_redis >= redirects * 0.99,
        "{from_redis} of {redirects} redirects answered by Redis; {errors} Redis errors"
    );
    let in_new = cluster.keys_on(added);
    assert!(in_new > 0, "the new master took no keys");
    println!(
        "resharding under {rate}/s: 1,800 slots moved by {moved:?}, a master added with 1,200 by \
         {joined:?}: {}; {from_redis} answered by Redis, {errors} Redis errors; new master holds {} keys",
        record.summary(),
        in_new
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault injection under load: run by `make fault` and `make soak`"]
async fn a_cold_start_and_a_flushed_redis_under_zipf_load_overrun_no_pool() {
    let redis = OwnRedis::start();
    let db_url = common::fresh_database().await;
    // A million links in the soak (a hundred thousand in `make fault`), read Zipf-popular.
    let count = if soak() { 1_000_000 } else { 100_000 };
    let codes = Arc::new(old_links(&db_url, "zipf", count).await);
    // Cold: nothing in memory, nothing in Redis.
    let service = Service::start(&db_url, &[("REDIS_URL", &redis.url())]);
    service.ready().await;
    let rate = FULL_RATE * scale();
    let (run, flush_at) = (secs(60, 24), secs(30, 12));
    let zipf = load::Zipf::new(codes.len());
    let mut rng = fastrand::Rng::with_seed(7);
    let read = Arc::clone(&codes);
    let load = Load::start(service.addr, rate, run, connections(rate), move |_| {
        Request::get("redirect", &format!("/{}", read[zipf.sample(&mut rng)]))
    });
    load.until(flush_at).await;
    redis.cli(&["FLUSHALL"]);
    let flushed = load.elapsed();
    let record = load.finish().await;

    // Nothing failed and the read pool never made a lookup wait past its acquire timeout:
    // concurrent misses of one code wait for one lookup (single flight), the rest queue
    // within the bound.
    assert_eq!(failures(&record, &[302]), 0, "{}", record.summary());
    let scrape = service.scrape().await;
    let timeouts = scrape.value(
        "shortener_db_pool_acquire_timeouts_total",
        &[("database", "primary"), ("pool", "read")],
    );
    assert_eq!(timeouts, 0.0, "the read pool was overrun");
    let second = Duration::from_secs(1);
    let cold = record.due_between(Duration::ZERO, second * 2);
    let before = record.due_between(flushed - second * 5, flushed);
    let after = record.due_between(flushed + second * 10, run);
    if soak() {
        // Back within twice the p99 before the flush, 10 s after it.
        assert!(
            after.quantile(0.99) <= before.quantile(0.99) * 2,
            "before {}; 10 s after {}",
            before.summary(),
            after.summary()
        );
    }
    println!(
        "cold start and FLUSHALL at {flushed:?} under {rate}/s over {count} links: first 2 s {}; \
         5 s before the flush {}; from 10 s after {}; coalesced {}",
        cold.summary(),
        before.summary(),
        after.summary(),
        scrape.value(
            "shortener_link_resolutions_total",
            &[("outcome", "coalesced")]
        )
    );
}
