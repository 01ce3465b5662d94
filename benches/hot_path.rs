//! Micro-benchmarks of the pieces on the request paths (targets of docs/requirements.md: id generation ≤ 50 ns;
//! code encode + decode ≤ 100 ns; a moka hit ≤ 300 ns), and one HTTP/1.1 exchange in memory
//! (request parsing, routing, the answer written) against a bare hyper handler. Run with
//! `make bench`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shortener::Application;
use shortener::clicks::{ClickKind, ClickRecorder, is_bot};
use shortener::config::{Cli, Command};
use shortener::domain::{ApiKey, Code, TargetUrl, UrlPolicy};
use shortener::ids::{CodeCodec, CodeKey, IdGenerator, WorkerId};
use shortener::limits::{LimitKey, LocalLimiter, RateSpec};
use shortener::links::{
    CacheSettings, LinkCache, QrFormat, ResolvedLink, Resolver, Visit, render_qr,
};
use shortener::storage::{Db, PgTarget, PoolSettings, PoolSizes};
use shortener::telemetry::RequestId;
use shortener::telemetry::metrics::{HttpMethod, HttpRoute, Layout, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Links in the cache while a hit is measured: a realistic table, not a one-entry map.
const CACHED_LINKS: i64 = 100_000;

fn ids_and_codes(c: &mut Criterion) {
    let generator = IdGenerator::with_worker(WorkerId::new(1).unwrap());
    c.bench_function("id_generation", |b| {
        b.iter(|| black_box(generator.next_id()))
    });

    let codec = CodeCodec::new(&CodeKey::derive(b"benchmark key"));
    let id = generator.next_id().unwrap();
    c.bench_function("code_encode_decode", |b| {
        b.iter(|| {
            let code = codec.encode(black_box(id));
            black_box(codec.decode(&code))
        })
    });
}

fn request_pieces(c: &mut Criterion) {
    let policy = UrlPolicy {
        own_host: "sho.rt".into(),
        ..UrlPolicy::default()
    };
    c.bench_function("url_validation", |b| {
        b.iter(|| {
            let target = TargetUrl::parse(black_box("https://example.com/some/long/path?q=1"));
            target.and_then(|target| policy.admit(&target).map(|()| target))
        })
    });
    let agent = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    c.bench_function("bot_detection", |b| b.iter(|| is_bot(black_box(agent))));
    // What a keyed request adds: the header's key parsed, digested, and found among 10,000
    // held keys (`links::KeyRing` on a hit).
    let keys: Vec<ApiKey> = (0..10_000u32)
        .map(|n| ApiKey::from_random(std::array::from_fn(|at| (n as usize * 31 + at) as u8)))
        .collect();
    let held: std::collections::HashMap<_, usize> = keys
        .iter()
        .enumerate()
        .map(|(at, key)| (key.digest(), at))
        .collect();
    let header = keys[4_321].reveal().as_bytes().to_vec();
    c.bench_function("api_key_check", |b| {
        b.iter(|| {
            let key = ApiKey::parse(black_box(&header)).unwrap();
            held.get(&key.digest()).copied()
        })
    });
    // A QR code as `/qr` makes it (on the blocking pool): the default SVG, and the largest PNG.
    for (name, format, size) in [
        ("qr_svg_256", QrFormat::Svg, 256),
        ("qr_png_2048", QrFormat::Png, 2048),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| render_qr(black_box("http://sho.rt/AbCdEfGhIjK"), format, size).unwrap())
        });
    }
    let recorder = ClickRecorder::new();
    let mut link = 0i64;
    c.bench_function("click_record", |b| {
        b.iter(|| {
            link = (link + 1) % 10_000;
            recorder.record(black_box(link), ClickKind::Person)
        })
    });
}

/// A link as the resolver caches it.
fn resolved(id: i64) -> Arc<ResolvedLink> {
    Arc::new(ResolvedLink::new(
        id,
        http::HeaderValue::from_str(&format!("https://example.com/some/long/path/{id}")).unwrap(),
        time::OffsetDateTime::now_utc(),
    ))
}

/// Times `iters` awaits of `step` inside one runtime, so `block_on` is not part of the figure.
fn time_async<F: std::future::Future>(
    runtime: &tokio::runtime::Runtime,
    iters: u64,
    mut step: impl FnMut(u64) -> F,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            black_box(step(i).await);
        }
        start.elapsed()
    })
}

fn cache_hits(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let codes: Vec<String> = (0..CACHED_LINKS).map(|i| format!("code{i:07}")).collect();

    // A bare moka cache of the same keys and values: the floor under the resolver.
    let bare: moka::future::Cache<Box<str>, Arc<ResolvedLink>> = moka::future::Cache::builder()
        .max_capacity(1_000_000)
        .time_to_live(Duration::from_secs(3600))
        .build();
    runtime.block_on(async {
        for (i, code) in codes.iter().enumerate() {
            bare.insert(code.as_str().into(), resolved(i as i64)).await;
        }
    });
    c.bench_function("moka_hit_one_key", |b| {
        b.iter_custom(|iters| time_async(&runtime, iters, |_| bare.get(codes[0].as_str())))
    });
    c.bench_function("moka_hit", |b| {
        b.iter_custom(|iters| {
            time_async(&runtime, iters, |i| {
                bare.get(codes[(i % CACHED_LINKS as u64) as usize].as_str())
            })
        })
    });

    // The resolver on a hit. Its database is never reached: every code is cached.
    let settings = PoolSettings {
        sizes: PoolSizes {
            read: 1,
            write: 1,
            background: 1,
        },
        acquire_timeout: Duration::from_millis(10),
        connect_timeout: Duration::from_millis(10),
        statement_timeout: Duration::from_millis(10),
    };
    let (resolver, clicks) = runtime.block_on(async {
        let never = PgTarget::parse("postgres://bench@127.0.0.1:1/never").unwrap();
        let db = Db::connect_lazy(&never, &[], &settings);
        let cache = Arc::new(LinkCache::new(CacheSettings {
            capacity: 1_000_000,
            ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(1),
        }));
        for (i, code) in codes.iter().enumerate() {
            cache.insert(code, resolved(i as i64)).await;
        }
        let clicks = Arc::new(ClickRecorder::new());
        let codec = CodeCodec::new(&CodeKey::derive(b"benchmark key"));
        let resolver = Resolver::new(
            cache,
            db,
            codec,
            Arc::clone(&clicks),
            Duration::from_secs(5),
        );
        (resolver, clicks)
    });
    // Parsed as the router parses them, before the resolver sees them.
    let parsed: Vec<Code> = codes
        .iter()
        .map(|code| Code::parse(code).unwrap())
        .collect();
    c.bench_function("resolve_moka_hit_one_key", |b| {
        b.iter_custom(|iters| {
            time_async(&runtime, iters, |_| async {
                resolver
                    .redirect(&parsed[0], Visit::Uncounted)
                    .await
                    .is_ok()
            })
        })
    });
    c.bench_function("resolve_moka_hit", |b| {
        b.iter_custom(|iters| {
            time_async(&runtime, iters, |i| {
                let code = &parsed[(i % CACHED_LINKS as u64) as usize];
                async { resolver.redirect(code, Visit::Uncounted).await.is_ok() }
            })
        })
    });
    c.bench_function("resolve_moka_hit_with_click", |b| {
        b.iter_custom(|iters| {
            time_async(&runtime, iters, |i| {
                let code = &parsed[(i % CACHED_LINKS as u64) as usize];
                async {
                    resolver
                        .redirect(code, Visit::Counted(ClickKind::Person))
                        .await
                        .is_ok()
                }
            })
        })
    });
    // Keep the recorder from growing across the whole run.
    black_box(clicks.drain().len());
}

/// The in-process limiter's decision on the redirect path: one client, and clients spread over
/// 100,000 addresses (what a cache miss in its key store costs).
fn limiter(c: &mut Criterion) {
    let spec: RateSpec = "1000000/s,burst=1000000".parse().unwrap();
    let limiter = LocalLimiter::new(spec, 1_000_000);
    let one = LimitKey::of("203.0.113.7".parse().unwrap());
    c.bench_function("limiter_one_client", |b| {
        b.iter(|| limiter.check(black_box(one)).allowed)
    });
    let clients: Vec<LimitKey> = (0..100_000u32)
        .map(|n| LimitKey::of(std::net::IpAddr::V4((0x0a00_0000 + n).into())))
        .collect();
    let mut next = 0;
    c.bench_function("limiter_spread_clients", |b| {
        b.iter(|| {
            next = (next + 7919) % clients.len();
            limiter.check(black_box(clients[next])).allowed
        })
    });
}

/// What a redirect pays for observability: its metrics (a sharded counter, a sharded
/// histogram sample, and the clock read twice) and its request id (made and written as the
/// `X-Request-Id` value).
fn observability(c: &mut Criterion) {
    let metrics = Metrics::new(&Layout {
        databases: vec!["primary".into()],
        pools: vec![],
        cache_capacity: [1_000_000, 100_000],
    });
    c.bench_function("request_metrics", |b| {
        b.iter(|| {
            let started = Instant::now();
            metrics.http.observe(
                black_box(HttpRoute::Redirect),
                HttpMethod::Get,
                black_box(302),
                started.elapsed(),
            );
        })
    });
    c.bench_function("request_id", |b| {
        b.iter(|| {
            RequestId::make().with_text(|text| black_box(http::HeaderValue::from_str(text).is_ok()))
        })
    });
}

/// A keep-alive client on one end of an in-memory stream: sends `request`, reads one answer
/// with an empty body, and hands back its status line's code.
struct Exchange {
    stream: DuplexStream,
    buffer: Vec<u8>,
}

impl Exchange {
    async fn send(&mut self, request: &[u8]) -> u16 {
        self.stream.write_all(request).await.unwrap();
        self.buffer.clear();
        loop {
            let mut chunk = [0u8; 1024];
            let read = self.stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
            if self.buffer.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let status = std::str::from_utf8(&self.buffer[9..12]).unwrap();
        status.parse().unwrap()
    }

    /// Like [`Exchange::send`], for an answer with a body (read to its `Content-Length`).
    async fn send_reading_body(&mut self, request: &[u8]) -> u16 {
        self.stream.write_all(request).await.unwrap();
        self.buffer.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
            let Some(head) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head_text = std::str::from_utf8(&self.buffer[..head]).unwrap();
            let length: usize = head_text
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if self.buffer.len() >= head + 4 + length {
                break;
            }
        }
        let status = std::str::from_utf8(&self.buffer[9..12]).unwrap();
        status.parse().unwrap()
    }
}

/// The service as `shortener serve` builds it on `database_url`, configured as in production
/// but with `flags` (limits off: one client sends everything). Its listeners are bound and left
/// idle; its background tasks run on `background`, a runtime of their own, so that what is
/// measured on the benchmark's runtime is the request alone.
fn bench_app(
    background: &tokio::runtime::Runtime,
    database_url: &str,
    flags: &[&str],
) -> Application {
    let mut argv = vec![
        "shortener",
        "serve",
        "--database-url",
        database_url,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(flags);
    let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let config = args.parse().unwrap();
    background.block_on(Application::build(config)).unwrap()
}

/// A connection in memory to the service's public handler, served on `runtime`.
fn connect_public(
    runtime: &tokio::runtime::Runtime,
    app: &Arc<shortener::http::State>,
    peer: std::net::SocketAddr,
) -> Exchange {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let app = Arc::clone(app);
    runtime.spawn(async move {
        let service = service_fn(move |request| {
            let response = shortener::http::handle_public(Arc::clone(&app), request, peer);
            async move { Ok::<_, std::convert::Infallible>(response.await) }
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    Exchange {
        stream: client,
        buffer: Vec::with_capacity(4096),
    }
}

/// One request parsed by hyper, routed and answered, over an in-memory stream (no kernel):
/// a bare handler returning a fixed 302 (hyper's own parsing and writing: the floor), and the
/// service's public handler redirecting a cached code (routing, the limiter's bypass, the
/// lookup, the click, metrics, the request id, the answer's headers). Their difference is
/// what the service adds to a redirect, without the network that dominates in production.
fn http_exchange(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Its database is never reached: every redirect here is a cache hit.
    let application = bench_app(
        &background,
        "postgres://bench@127.0.0.1:1/never",
        &["--rate-limit-redirect", "off"],
    );
    let app = application.state();
    let code = "bench123";
    runtime.block_on(application.link_cache().insert(code, resolved(1)));
    let request = format!(
        "GET /{code} HTTP/1.1\r\nHost: sho.rt\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
         AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\nAccept: */*\r\n\r\n"
    );
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();

    // The floor: hyper alone, answering a fixed 302.
    let connect_bare = || {
        let (client, server) = tokio::io::duplex(64 * 1024);
        runtime.spawn(async move {
            let service = service_fn(|_request| async {
                let mut response = http::Response::new(Full::new(Bytes::new()));
                *response.status_mut() = http::StatusCode::FOUND;
                let headers = response.headers_mut();
                headers.insert(
                    http::header::LOCATION,
                    http::HeaderValue::from_static("https://example.com/some/long/path"),
                );
                headers.insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("private, max-age=0"),
                );
                Ok::<_, std::convert::Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        Exchange {
            stream: client,
            buffer: Vec::with_capacity(1024),
        }
    };
    for (name, service) in [("http_bare_302", false), ("http_redirect_hit", true)] {
        let mut exchange = if service {
            connect_public(&runtime, &app, peer)
        } else {
            connect_bare()
        };
        assert_eq!(runtime.block_on(exchange.send(request.as_bytes())), 302);
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(exchange.send(request.as_bytes()).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
}

/// What an API key costs a create, end to end in one process: `POST /shorten` through the
/// service's handler over an in-memory stream, against a real Postgres (every create committed
/// by the group-commit writer before its 201, one at a time), anonymous and with a key (the
/// key checked, the per-key limit, the owner written). Needs `SHORTENER_BENCH_DATABASE_URL`, a
/// database the benchmark may fill (`make bench` makes one); skipped without it.
fn creates(c: &mut Criterion) {
    let Ok(url) = std::env::var("SHORTENER_BENCH_DATABASE_URL") else {
        eprintln!(
            "create_anonymous, create_keyed: skipped (SHORTENER_BENCH_DATABASE_URL is not set)"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let target = PgTarget::parse(&url).unwrap();
    background
        .block_on(shortener::storage::migrate(&target))
        .unwrap();
    // A key of this run (digests are unique): its random part from the clock.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = ApiKey::from_random(std::array::from_fn(|at| {
        (nanos >> ((at % 16) * 8)) as u8 ^ at as u8
    }));
    background.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .execute(
                "INSERT INTO api_keys (name, scope, digest) VALUES ('bench', 'links', $1)",
                &[&key.digest().0.as_slice()],
            )
            .await
            .unwrap();
    });
    let application = bench_app(&background, &url, &["--rate-limit-create", "off"]);
    let app = application.state();
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let body = r#"{"url": "https://example.com/a/path/of/an/ordinary/length?utm_source=bench"}"#;
    for (name, authorization) in [
        ("create_anonymous", String::new()),
        (
            "create_keyed",
            format!("Authorization: Bearer {}\r\n", key.reveal()),
        ),
    ] {
        let request = format!(
            "POST /shorten HTTP/1.1\r\nHost: sho.rt\r\nContent-Type: application/json\r\n\
             {authorization}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut exchange = connect_public(&runtime, &app, peer);
        // The key set is read at start-up: the first keyed create is already 201.
        assert_eq!(
            runtime.block_on(exchange.send_reading_body(request.as_bytes())),
            201,
            "{}",
            String::from_utf8_lossy(&exchange.buffer)
        );
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(exchange.send_reading_body(request.as_bytes()).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
}

criterion_group!(
    benches,
    ids_and_codes,
    request_pieces,
    cache_hits,
    limiter,
    observability,
    http_exchange,
    creates
);
criterion_main!(benches);
