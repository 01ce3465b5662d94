//! An open-loop generator of the targets' mix: requests are sent at a fixed rate whatever the
//! answers' pace, and each one's latency is counted from the moment it was due (not from when a
//! connection was free to send it), so a server that falls behind shows it in the percentiles
//! instead of slowing the generator down (coordinated omission). Mix: redirects of
//! Zipf-popular codes, creates, stats; HTTP/1.1 with keep-alive, on loopback.
//!
//!     cargo build --release --example open_loop
//!     target/release/examples/open_loop ADDR RATE SECONDS CODES_FILE [CONNECTIONS] [MIX]
//!
//! `CODES_FILE`: one code a line (`shortener seed --codes-out`), the first the most popular
//! (Zipf, s = 1). `CONNECTIONS` [256]: requests due while all are busy wait, and that wait is
//! counted. `MIX` [95,4,1]: percentages of redirects, creates and stats. Prints one line of
//! JSON: for each kind and in all, the count, the unexpected answers (a redirect not 302, a
//! create not 201, stats not 200; unanswered ones too) and the p50, p90, p99, p99.9 and max
//! latency in milliseconds, and the requests sent late (more than 2 ms after they were due: the
//! timer wakes the scheduler once a millisecond, so a request may leave up to 1 ms after its
//! time, and that delay is in its latency).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redirect,
    Create,
    Stats,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Redirect, Kind::Create, Kind::Stats];

    fn name(self) -> &'static str {
        match self {
            Kind::Redirect => "redirect",
            Kind::Create => "create",
            Kind::Stats => "stats",
        }
    }

    fn expected(self) -> u16 {
        match self {
            Kind::Redirect => 302,
            Kind::Create => 201,
            Kind::Stats => 200,
        }
    }
}

struct Job {
    due: Instant,
    kind: Kind,
    request: Vec<u8>,
}

struct Outcome {
    kind: Kind,
    /// From the moment the request was due to its answer's last byte.
    latency: Duration,
    ok: bool,
}

/// Zipf (s = 1) over `n` ranks: the cumulative weights, searched with a uniform draw.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / k as f64;
                total
            })
            .collect::<Vec<_>>();
        Zipf(cumulative.into_iter().map(|c| c / total).collect())
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

fn usage() -> ! {
    eprintln!("usage: open_loop ADDR RATE SECONDS CODES_FILE [CONNECTIONS] [MIX]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        usage();
    }
    let addr: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
    let rate: f64 = args[2].parse().unwrap_or_else(|_| usage());
    let seconds: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let codes: Vec<String> = std::fs::read_to_string(&args[4])
        .unwrap_or_else(|error| panic!("{}: {error}", args[4]))
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!codes.is_empty(), "no codes in {}", args[4]);
    let connections: usize = args
        .get(5)
        .map_or(256, |c| c.parse().unwrap_or_else(|_| usage()));
    let mix: Vec<u32> = args
        .get(6)
        .map_or("95,4,1", String::as_str)
        .split(',')
        .map(|p| p.parse().unwrap_or_else(|_| usage()))
        .collect();
    assert!(
        mix.len() == 3 && mix.iter().sum::<u32>() == 100,
        "MIX: three percentages"
    );

    let (jobs, queue) = mpsc::unbounded_channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let (outcomes, mut results) = mpsc::unbounded_channel::<Outcome>();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (queue, outcomes) = (Arc::clone(&queue), outcomes.clone());
        workers.push(tokio::spawn(async move {
            let mut stream: Option<TcpStream> = None;
            let mut buffer = Vec::with_capacity(4096);
            loop {
                let Some(job) = queue.lock().await.recv().await else {
                    return;
                };
                let status = exchange(&mut stream, addr, &job.request, &mut buffer).await;
                let _ = outcomes.send(Outcome {
                    kind: job.kind,
                    latency: job.due.elapsed(),
                    ok: status == Some(job.kind.expected()),
                });
            }
        }));
    }
    drop(outcomes);

    // The schedule: request i is due at start + i / rate, whatever came back.
    let zipf = Zipf::new(codes.len());
    let mut rng = fastrand::Rng::with_seed(42);
    let total = (rate * seconds) as u64;
    let start = Instant::now() + Duration::from_millis(100);
    let mut late = 0u64;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if due.elapsed() > Duration::from_millis(2) {
            late += 1;
        }
        let draw = rng.u32(0..100);
        let (kind, request) = if draw < mix[0] {
            let code = &codes[zipf.sample(&mut rng)];
            (
                Kind::Redirect,
                format!("GET /{code} HTTP/1.1\r\nHost: sho.rt\r\nUser-Agent: open-loop\r\n\r\n")
                    .into_bytes(),
            )
        } else if draw < mix[0] + mix[1] {
            let body = format!(r#"{{"url": "https://example.com/open-loop/{i}"}}"#);
            (
                Kind::Create,
                format!(
                    "POST /shorten HTTP/1.1\r\nHost: sho.rt\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            )
        } else {
            let code = &codes[zipf.sample(&mut rng)];
            (
                Kind::Stats,
                format!("GET /{code}/stats HTTP/1.1\r\nHost: sho.rt\r\n\r\n").into_bytes(),
            )
        };
        let _ = jobs.send(Job { due, kind, request });
    }
    drop(jobs);
    // Whatever is still queued or in flight gets its answer or a bounded wait.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        for worker in workers {
            let _ = worker.await;
        }
    })
    .await;

    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let mut errors = [0u64; 3];
    while let Ok(outcome) = results.try_recv() {
        let at = Kind::ALL.iter().position(|k| *k == outcome.kind).unwrap();
        latencies[at].push(outcome.latency);
        errors[at] += u64::from(!outcome.ok);
    }
    let answered: u64 = latencies.iter().map(|l| l.len() as u64).sum();
    let unanswered = total - answered;
    let mut all: Vec<Duration> = latencies.iter().flatten().copied().collect();
    let mut kinds = serde_json::Map::new();
    for (at, kind) in Kind::ALL.iter().enumerate() {
        kinds.insert(
            kind.name().to_owned(),
            summary(&mut latencies[at], errors[at]),
        );
    }
    let mut line = serde_json::Map::new();
    line.insert("rate".into(), rate.into());
    line.insert("seconds".into(), seconds.into());
    line.insert("sent".into(), total.into());
    line.insert("late".into(), late.into());
    line.insert(
        "all".into(),
        summary(&mut all, errors.iter().sum::<u64>() + unanswered),
    );
    line.insert("kinds".into(), kinds.into());
    println!("{}", serde_json::Value::Object(line));
}

fn summary(latencies: &mut [Duration], errors: u64) -> serde_json::Value {
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    serde_json::json!({
        "count": latencies.len(),
        "errors": errors,
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

/// One request on the worker's keep-alive connection (made again when it broke): the
/// answer's status, `None` when there was none.
async fn exchange(
    stream: &mut Option<TcpStream>,
    addr: SocketAddr,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> Option<u16> {
    for _ in 0..2 {
        if stream.is_none() {
            let connected = TcpStream::connect(addr).await.ok()?;
            connected.set_nodelay(true).ok()?;
            *stream = Some(connected);
        }
        let connection = stream.as_mut()?;
        if let Some(status) = send(connection, request, buffer).await {
            return Some(status);
        }
        *stream = None;
    }
    None
}

async fn send(stream: &mut TcpStream, request: &[u8], buffer: &mut Vec<u8>) -> Option<u16> {
    stream.write_all(request).await.ok()?;
    buffer.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(head) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let text = std::str::from_utf8(&buffer[..head]).ok()?;
        let length: usize = text
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
            .unwrap_or(0);
        if buffer.len() >= head + 4 + length {
            return std::str::from_utf8(buffer.get(9..12)?).ok()?.parse().ok();
        }
    }
}
