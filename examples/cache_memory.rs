//! Memory per cached link, split into moka's own overhead, the key, the value and the URL
//! (issue #10). One layout per process run, so each run's RSS holds that layout alone:
//!
//!     cargo build --release --example cache_memory
//!     target/release/examples/cache_memory LAYOUT [N]      (N: 1,000,000 entries)
//!
//! | layout | what is cached |
//! | --- | --- |
//! | `u64-unit` | `moka<u64, ()>`: moka's own overhead with an 8-byte key |
//! | `code-unit` | `moka<Box<str>, ()>`: the same, keyed by an 11-character generated code |
//! | `code-link-nourl` | `moka<Box<str>, Arc<ResolvedLink>>` whose `Location` is empty (no URL) |
//! | `code-link` | the service's layout: [`LinkCache`] with 60-byte URLs, as the resolver fills it |
//! | `code-link-hit` | `code-link` after one redirect of every link (see below) |
//! | `code-link-spread-hit` | `code-link-hit` with targets of a realistic spread of lengths: 30 % 40–59 bytes, 40 % 60–119, 20 % 120–249, 9 % 250–599, 1 % 600–1,999 (mean about 140; `loadtest/storage.sh` uses the same) |
//! | `id-link` | `moka<u64, Arc<ResolvedLink>>`, keyed by the id the code decodes to |
//! | `id-link-hit` | `id-link` after one redirect of every link |
//! | `hashmap-code-link` | a plain `HashMap<Box<str>, Arc<ResolvedLink>>` (no moka) |
//!
//! Ids come from the Snowflake generator and codes from the codec, links from
//! [`ResolvedLink::from_record`] with a `LinkRecord` shaped as tokio-postgres returns it (a
//! target `String` whose capacity is its length, so `Bytes` takes it without a header).
//! Serving a link clones its `Location`, and the first clone of such a `Bytes` moves its
//! buffer under a shared header of its own (24 bytes, a 32-byte jemalloc class): the `-hit`
//! layouts clone every `Location` once, as the redirect handler would.
//!
//! Every moka cache is built as [`LinkCache`] builds its own: `max_capacity(N)`, a 1 h TTL.
//! Printed, per entry: RSS growth right after `run_pending_tasks` (`rss`), the same once
//! jemalloc has returned its unused dirty pages (`rss_purged`, the settled figure), and the
//! heap the entries hold, in jemalloc size classes (`heap`) and as requested (`requested`),
//! counted by a wrapper around the allocator (jemalloc's own `stats.allocated` needs its
//! `stats` feature, which this build does not enable).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use moka::future::Cache;
use shortener::ids::{CodeCodec, CodeKey, IdGenerator, WorkerId};
use shortener::links::{CacheSettings, LinkCache, ResolvedLink};
use shortener::storage::LinkRecord;
use time::OffsetDateTime;

const LAYOUTS: [&str; 9] = [
    "u64-unit",
    "code-unit",
    "code-link-nourl",
    "code-link",
    "code-link-hit",
    "code-link-spread-hit",
    "id-link",
    "id-link-hit",
    "hashmap-code-link",
];
const URL_PREFIX: &str = "https://example.com/seeded/";
const URL_LEN: usize = 60;
const TTL: Duration = Duration::from_secs(3600);

/// Live heap bytes: as requested, and in the allocator's size classes.
static REQUESTED: AtomicI64 = AtomicI64::new(0);
static IN_CLASSES: AtomicI64 = AtomicI64::new(0);

/// The global allocator, counting what it holds.
#[cfg_attr(not(feature = "jemalloc"), allow(dead_code))]
struct Counting<A>(A);

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: Counting<tikv_jemallocator::Jemalloc> = Counting(tikv_jemallocator::Jemalloc);

/// The size class behind `ptr`, where the allocator tells it.
#[cfg(feature = "jemalloc")]
unsafe fn class_size(ptr: *const u8, _layout: Layout) -> usize {
    // SAFETY: `ptr` is live and came from jemalloc (the callers' contract).
    unsafe { tikv_jemallocator::usable_size(ptr) }
}
#[cfg(not(feature = "jemalloc"))]
#[allow(dead_code)]
unsafe fn class_size(_ptr: *const u8, layout: Layout) -> usize {
    layout.size()
}

#[cfg_attr(not(feature = "jemalloc"), allow(dead_code))]
fn count(layout: Layout, class: usize, sign: i64) {
    REQUESTED.fetch_add(sign * layout.size() as i64, Ordering::Relaxed);
    IN_CLASSES.fetch_add(sign * class as i64, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the wrapped allocator unchanged; the counters only read
// the size of blocks that are live at the time.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            count(layout, unsafe { class_size(ptr, layout) }, 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout, unsafe { class_size(ptr, layout) }, 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is live until the call below.
        count(layout, unsafe { class_size(ptr, layout) }, -1);
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is live until the call below; forwarded as received.
        let old_class = unsafe { class_size(ptr, layout) };
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(layout, old_class, -1);
            let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
            count(new_layout, unsafe { class_size(new, new_layout) }, 1);
        }
        new
    }
}

/// Hands jemalloc's unused dirty pages back to the kernel, as its decay does on its own
/// within about 10 s of activity; a no-op without jemalloc.
fn purge() {
    #[cfg(feature = "jemalloc")]
    {
        // tikv-jemalloc-sys links jemalloc with its symbols prefixed `_rjem_`.
        unsafe extern "C" {
            #[link_name = "_rjem_mallctl"]
            fn mallctl(
                name: *const std::ffi::c_char,
                oldp: *mut std::ffi::c_void,
                oldlenp: *mut usize,
                newp: *mut std::ffi::c_void,
                newlen: usize,
            ) -> std::ffi::c_int;
        }
        // 4096 is MALLCTL_ARENAS_ALL.
        for name in [c"thread.tcache.flush", c"arena.4096.purge"] {
            // SAFETY: both are void commands: no old or new value.
            let rc = unsafe {
                mallctl(
                    name.as_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                )
            };
            assert_eq!(rc, 0, "mallctl {name:?} failed");
        }
    }
}

/// Resident bytes of this process (field 2 of `/proc/self/statm` times the page size).
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: i64 = statm
        .split_ascii_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: sysconf reads a constant of the C library.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64
}

#[derive(Clone, Copy)]
struct Reading {
    rss: i64,
    requested: i64,
    in_classes: i64,
}

fn read() -> Reading {
    Reading {
        rss: rss(),
        requested: REQUESTED.load(Ordering::Relaxed),
        in_classes: IN_CLASSES.load(Ordering::Relaxed),
    }
}

/// Makes the entries: ids from the generator, their codes, and their links.
struct Source {
    ids: IdGenerator,
    codec: CodeCodec,
    created_at: OffsetDateTime,
    n: u64,
    /// Targets of the spread of lengths instead of 60 bytes.
    spread: Option<fastrand::Rng>,
}

impl Source {
    fn new() -> Self {
        Source {
            ids: IdGenerator::with_worker(WorkerId::new(7).unwrap()),
            codec: CodeCodec::new(&CodeKey::derive(b"cache-memory measurement key")),
            created_at: OffsetDateTime::now_utc(),
            n: 0,
            spread: None,
        }
    }

    /// The next id and its code.
    fn next(&mut self) -> (i64, String) {
        let id = self.ids.next_id().expect("the generator holds a worker id");
        let code = String::from_utf8(self.codec.encode(id).to_vec()).unwrap();
        self.n += 1;
        (id, code)
    }

    /// The id a generated code decodes to, as the resolver finds it.
    fn decode(&self, code: &str) -> u64 {
        self.codec.decode(code.as_bytes()).unwrap() as u64
    }

    /// The link of the last entry, as the resolver builds it from a row.
    fn link(&mut self, id: i64, code: String, with_url: bool) -> Arc<ResolvedLink> {
        if !with_url {
            return Arc::new(ResolvedLink::new(
                id,
                HeaderValue::from_static(""),
                self.created_at,
            ));
        }
        if let Some(rng) = &mut self.spread {
            let length = match rng.u32(0..100) {
                0..30 => rng.usize(40..60),
                30..70 => rng.usize(60..120),
                70..90 => rng.usize(120..250),
                90..99 => rng.usize(250..600),
                _ => rng.usize(600..2000),
            };
            let mut target_url = String::with_capacity(length);
            target_url.push_str(URL_PREFIX);
            write!(target_url, "{}-", self.n).unwrap();
            while target_url.len() < length {
                target_url.push('x');
            }
            target_url.truncate(length.max(URL_PREFIX.len()));
            target_url.shrink_to_fit();
            return ResolvedLink::from_record(LinkRecord::new(
                id,
                code,
                target_url,
                self.created_at,
            ))
            .expect("a spread target is redirectable");
        }
        // As seeded (`shortener seed`), and as tokio-postgres hands a text column over: a
        // `String` exactly as long as its content.
        let mut target_url = String::with_capacity(URL_LEN);
        target_url.push_str(URL_PREFIX);
        write!(
            target_url,
            "{:0>width$}",
            self.n,
            width = URL_LEN - URL_PREFIX.len()
        )
        .unwrap();
        assert_eq!(
            (target_url.len(), target_url.capacity()),
            (URL_LEN, URL_LEN)
        );
        ResolvedLink::from_record(LinkRecord::new(id, code, target_url, self.created_at))
            .expect("a seeded target is redirectable")
    }
}

/// What one redirect does to a cached link's memory: its `Location` is cloned (and dropped
/// once sent).
fn serve(link: &ResolvedLink) {
    drop(std::hint::black_box(link.location.clone()));
}

/// A moka cache built as `LinkCache` builds its own.
fn moka<K, V>(n: u64) -> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(n).time_to_live(TTL).build()
}

/// Fills a bare moka cache with `n` entries made by `entry`; answers its entry count.
async fn fill<K, V>(n: u64, mut entry: impl FnMut() -> (K, V), baseline: &mut Reading) -> u64
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let cache = moka::<K, V>(n);
    purge();
    *baseline = read();
    for _ in 0..n {
        let (key, value) = entry();
        cache.insert(key, value).await;
    }
    cache.run_pending_tasks().await;
    let held = cache.entry_count();
    // Kept alive past the readings.
    std::mem::forget(cache);
    held
}

async fn run(layout: &str, n: u64, baseline: &mut Reading) -> u64 {
    let mut source = Source::new();
    match layout {
        "u64-unit" => fill(n, || (source.next().0 as u64, ()), baseline).await,
        "code-unit" => fill(n, || (Box::<str>::from(source.next().1), ()), baseline).await,
        "code-link-nourl" => {
            let entry = || {
                let (id, code) = source.next();
                (
                    Box::<str>::from(code.as_str()),
                    source.link(id, code, false),
                )
            };
            fill(n, entry, baseline).await
        }
        "id-link" | "id-link-hit" => {
            let hit = layout.ends_with("-hit");
            let entry = || {
                let (id, code) = source.next();
                let key = source.decode(&code);
                let link = source.link(id, code, true);
                if hit {
                    serve(&link);
                }
                (key, link)
            };
            fill(n, entry, baseline).await
        }
        "code-link" | "code-link-hit" | "code-link-spread-hit" => {
            let hit = layout.ends_with("-hit");
            if layout.contains("-spread") {
                source.spread = Some(fastrand::Rng::with_seed(42));
            }
            let cache = LinkCache::new(CacheSettings {
                capacity: n,
                ttl: TTL,
                negative_ttl: Duration::from_secs(60),
            });
            purge();
            *baseline = read();
            for _ in 0..n {
                let (id, code) = source.next();
                let link = source.link(id, code.clone(), true);
                cache.insert(&code, Arc::clone(&link)).await;
                if hit {
                    serve(&link);
                }
            }
            let held = cache.entry_count_now().await;
            std::mem::forget(cache);
            held
        }
        "hashmap-code-link" => {
            purge();
            *baseline = read();
            let mut map = HashMap::new();
            for _ in 0..n {
                let (id, code) = source.next();
                let key = Box::<str>::from(code.as_str());
                map.insert(key, source.link(id, code, true));
            }
            let held = map.len() as u64;
            std::mem::forget(map);
            held
        }
        other => {
            eprintln!("unknown layout {other:?}; one of {}", LAYOUTS.join(", "));
            std::process::exit(64);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(layout) = args.next() else {
        eprintln!(
            "usage: cache_memory LAYOUT [N]\nlayouts: {}",
            LAYOUTS.join(", ")
        );
        std::process::exit(64);
    };
    let n: u64 = args.next().map_or(1_000_000, |raw| raw.parse().expect("N"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut baseline = read();
    let held = runtime.block_on(run(&layout, n, &mut baseline));
    assert_eq!(held, n, "every entry must be held (none evicted)");
    let filled = read();
    purge();
    let settled = read();
    let per = |bytes: i64| bytes as f64 / n as f64;
    println!(
        "layout={layout} n={n} rss={:.1} rss_purged={:.1} heap={:.1} requested={:.1} \
         size_of_resolved_link={}",
        per(filled.rss - baseline.rss),
        per(settled.rss - baseline.rss),
        per(settled.in_classes - baseline.in_classes),
        per(settled.requested - baseline.requested),
        size_of::<ResolvedLink>(),
    );
}
