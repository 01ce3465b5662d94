//! Micro-benchmarks of the pieces on the request paths (BRIEF targets: id generation ≤ 50 ns;
//! code encode + decode ≤ 100 ns; a moka hit ≤ 300 ns). Run with `make bench`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use shortener::clicks::{ClickKind, ClickRecorder, is_bot};
use shortener::domain::{TargetUrl, UrlPolicy};
use shortener::ids::{CodeCodec, CodeKey, IdGenerator, WorkerId};
use shortener::limits::{LimitKey, LocalLimiter, RateSpec};
use shortener::links::{CacheSettings, LinkCache, ResolvedLink, Resolver, Visit};
use shortener::storage::{Db, PoolSettings, PoolSizes};
use shortener::telemetry::RequestId;
use shortener::telemetry::metrics::{HttpMethod, HttpRoute, Layout, Metrics};

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
        b.iter(|| TargetUrl::parse(black_box("https://example.com/some/long/path?q=1"), &policy))
    });
    let agent = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    c.bench_function("bot_detection", |b| b.iter(|| is_bot(black_box(agent))));
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
    Arc::new(ResolvedLink {
        id,
        location: http::HeaderValue::from_str(&format!("https://example.com/some/long/path/{id}"))
            .unwrap(),
        created_at: time::OffsetDateTime::now_utc(),
        expires_at: None,
        disabled_at: None,
    })
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
        let db = Db::connect_lazy("postgres://bench@127.0.0.1:1/never", &[], &settings).unwrap();
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
    c.bench_function("resolve_moka_hit_one_key", |b| {
        b.iter_custom(|iters| {
            time_async(&runtime, iters, |_| async {
                resolver.redirect(&codes[0], Visit::Uncounted).await.is_ok()
            })
        })
    });
    c.bench_function("resolve_moka_hit", |b| {
        b.iter_custom(|iters| {
            time_async(&runtime, iters, |i| {
                let code = codes[(i % CACHED_LINKS as u64) as usize].as_str();
                async { resolver.redirect(code, Visit::Uncounted).await.is_ok() }
            })
        })
    });
    c.bench_function("resolve_moka_hit_with_click", |b| {
        b.iter_custom(|iters| {
            time_async(&runtime, iters, |i| {
                let code = codes[(i % CACHED_LINKS as u64) as usize].as_str();
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

criterion_group!(
    benches,
    ids_and_codes,
    request_pieces,
    cache_hits,
    limiter,
    observability
);
criterion_main!(benches);
