//! A bounded open-loop load generator for the fault tests: requests leave at a fixed rate for a
//! fixed time whatever the answers' pace, over a pool of keep-alive connections, and every
//! answer is recorded (its status, whether it said `Retry-After`, and its latency counted from
//! the moment the request was due, so a server that falls behind shows it instead of slowing
//! the generator down). A request that gets no answer (reset, closed, or past the answer
//! deadline) is recorded with status 0. Only loopback addresses are loaded.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

/// The longest a request waits for its answer before it counts as unanswered (status 0).
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// One request the schedule sends: its kind (for the record), its bytes (HTTP/1.1, keep-alive),
/// and whether it may be sent again once on a fresh connection when the first got no answer
/// because the connection broke, as a browser does with an idempotent request (never a create).
pub struct Request {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    pub retry_once: bool,
}

impl Request {
    /// `GET path`, retried once on a broken connection.
    pub fn get(kind: &'static str, path: &str) -> Request {
        Request {
            kind,
            bytes: format!("GET {path} HTTP/1.1\r\nHost: sho.rt\r\nUser-Agent: load\r\n\r\n")
                .into_bytes(),
            retry_once: true,
        }
    }

    /// `POST /shorten` of `url` with an `Idempotency-Key`: safe to send again, so retried once
    /// on a broken connection.
    pub fn create_once(kind: &'static str, url: &str, key: &str) -> Request {
        let body = serde_json::json!({ "url": url }).to_string();
        Request {
            kind,
            bytes: format!(
                "POST /shorten HTTP/1.1\r\nHost: sho.rt\r\nContent-Type: application/json\r\n\
                 Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
            retry_once: true,
        }
    }

    /// `POST /shorten` of `url`, never retried.
    pub fn create(kind: &'static str, url: &str) -> Request {
        let body = serde_json::json!({ "url": url }).to_string();
        Request {
            kind,
            bytes: format!(
                "POST /shorten HTTP/1.1\r\nHost: sho.rt\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
            retry_once: false,
        }
    }
}

/// One answer (or its absence).
#[derive(Debug, Clone)]
pub struct Answer {
    /// Which request of the schedule it was (`make`'s argument).
    pub index: u64,
    pub kind: &'static str,
    /// When the request was due, from the start of the run.
    pub due: Duration,
    /// 0: no answer (the connection broke, or nothing came within [`ANSWER_DEADLINE`]).
    pub status: u16,
    pub retry_after: bool,
    /// From the moment it was due to its answer's last byte.
    pub latency: Duration,
    /// Sent a second time on a fresh connection after the first try broke.
    pub retried: bool,
    /// What went wrong when there was no answer.
    pub error: Option<String>,
}

/// Where the load goes: the addresses of the instances behind a load balancer. A connection is
/// made to one of them (in turn); taking an instance out (as an endpoint is taken out when its
/// readiness fails) sends new connections elsewhere, while those already open to it stay
/// until it closes them, as a client's pool keeps them.
#[derive(Clone)]
pub struct Targets(Arc<RwLock<Vec<SocketAddr>>>);

impl Targets {
    pub fn new(addrs: Vec<SocketAddr>) -> Targets {
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "load goes to loopback only"
        );
        Targets(Arc::new(RwLock::new(addrs)))
    }

    /// The instances new connections go to from now on.
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        assert!(addrs.iter().all(|addr| addr.ip().is_loopback()));
        *self.0.write().unwrap() = addrs;
    }

    fn pick(&self, turn: usize) -> SocketAddr {
        let addrs = self.0.read().unwrap();
        addrs[turn % addrs.len()]
    }
}

impl From<SocketAddr> for Targets {
    fn from(addr: SocketAddr) -> Targets {
        Targets::new(vec![addr])
    }
}

/// A run under way.
pub struct Load {
    /// When request 0 was due: fault times are measured from here.
    pub started: Instant,
    scheduler: JoinHandle<Record>,
}

impl Load {
    /// Sends `rate` requests a second for `duration` to `addr` over `connections` keep-alive
    /// connections; request `i` is `make(i)`.
    pub fn start(
        targets: impl Into<Targets>,
        rate: f64,
        duration: Duration,
        connections: usize,
        mut make: impl FnMut(u64) -> Request + Send + 'static,
    ) -> Load {
        let targets = targets.into();
        let started = Instant::now() + Duration::from_millis(50);
        let (jobs, queue) = mpsc::unbounded_channel::<(Instant, u64, Request)>();
        let queue = Arc::new(Mutex::new(queue));
        let (answers, mut recorded) = mpsc::unbounded_channel::<Answer>();
        let mut workers = Vec::with_capacity(connections);
        for worker in 0..connections {
            let (queue, answers, targets) = (Arc::clone(&queue), answers.clone(), targets.clone());
            workers.push(tokio::spawn(async move {
                let mut stream: Option<TcpStream> = None;
                let mut turn = worker;
                let mut buffer = Vec::with_capacity(4096);
                loop {
                    let Some((due, index, request)) = queue.lock().await.recv().await else {
                        return;
                    };
                    let answer =
                        exchange(&mut stream, &targets, &mut turn, &request, &mut buffer).await;
                    let (status, retry_after, retried, error) = match answer {
                        Ok((status, retry_after, retried)) => (status, retry_after, retried, None),
                        Err(error) => (0, false, request.retry_once, Some(error)),
                    };
                    let _ = answers.send(Answer {
                        index,
                        kind: request.kind,
                        due: due - started,
                        status,
                        retry_after,
                        latency: due.elapsed(),
                        retried,
                        error,
                    });
                }
            }));
        }
        drop(answers);
        let scheduler = tokio::spawn(async move {
            let total = (rate * duration.as_secs_f64()) as u64;
            for i in 0..total {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let _ = jobs.send((due, i, make(i)));
            }
            drop(jobs);
            let drained = tokio::time::timeout(ANSWER_DEADLINE * 3, async {
                for worker in workers {
                    let _ = worker.await;
                }
            })
            .await;
            assert!(drained.is_ok(), "the load's workers did not finish");
            let mut answers = Vec::with_capacity(total as usize);
            while let Ok(answer) = recorded.try_recv() {
                answers.push(answer);
            }
            answers.sort_by_key(|answer| answer.due);
            assert_eq!(answers.len() as u64, total, "every request is recorded");
            Record { answers }
        });
        Load { started, scheduler }
    }

    /// The time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the run is `at` from its start.
    pub async fn until(&self, at: Duration) {
        tokio::time::sleep_until((self.started + at).into()).await;
    }

    /// Waits for every request's answer.
    pub async fn finish(self) -> Record {
        self.scheduler.await.expect("the load runs to its end")
    }
}

/// Every answer of a run, in the order the requests were due.
#[derive(Debug, Clone)]
pub struct Record {
    pub answers: Vec<Answer>,
}

impl Record {
    /// The answers of one kind.
    pub fn of(&self, kind: &str) -> Record {
        self.filter(|answer| answer.kind == kind)
    }

    /// The answers to requests due in `[from, to)` from the start.
    pub fn due_between(&self, from: Duration, to: Duration) -> Record {
        self.filter(|answer| answer.due >= from && answer.due < to)
    }

    pub fn filter(&self, keep: impl Fn(&Answer) -> bool) -> Record {
        Record {
            answers: self
                .answers
                .iter()
                .filter(|answer| keep(answer))
                .cloned()
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// How many answered `status` (0: unanswered).
    pub fn with_status(&self, status: u16) -> usize {
        self.answers.iter().filter(|a| a.status == status).count()
    }

    /// How many did not answer one of `statuses`.
    pub fn other_than(&self, statuses: &[u16]) -> usize {
        self.answers
            .iter()
            .filter(|a| !statuses.contains(&a.status))
            .count()
    }

    /// The number of answers by status.
    pub fn statuses(&self) -> BTreeMap<u16, usize> {
        let mut counts = BTreeMap::new();
        for answer in &self.answers {
            *counts.entry(answer.status).or_default() += 1;
        }
        counts
    }

    /// The latency at quantile `q` (0 to 1) of the answered requests.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut latencies: Vec<Duration> = self
            .answers
            .iter()
            .filter(|a| a.status != 0)
            .map(|a| a.latency)
            .collect();
        latencies.sort_unstable();
        let at = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(at).copied().unwrap_or_default()
    }

    /// One line for an assertion's message: counts by status, the retried, the first errors,
    /// and the latency quantiles.
    pub fn summary(&self) -> String {
        let errors: Vec<String> = self
            .answers
            .iter()
            .filter_map(|a| {
                a.error
                    .as_ref()
                    .map(|e| format!("{} at {:?}: {e}", a.kind, a.due))
            })
            .take(5)
            .collect();
        format!(
            "{} requests, statuses {:?}, {} retried, p50 {:?}, p99 {:?}, max {:?}, errors {errors:?}",
            self.len(),
            self.statuses(),
            self.answers.iter().filter(|a| a.retried).count(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0),
        )
    }
}

/// One request on the worker's keep-alive connection, made again when it broke; a request that
/// may be retried is sent once more on a fresh connection when the first try got no answer.
async fn exchange(
    stream: &mut Option<TcpStream>,
    targets: &Targets,
    turn: &mut usize,
    request: &Request,
    buffer: &mut Vec<u8>,
) -> Result<(u16, bool, bool), String> {
    let tries = if request.retry_once { 2 } else { 1 };
    let mut last = String::new();
    for attempt in 0..tries {
        if stream.is_none() {
            *turn += 1;
            let addr = targets.pick(*turn);
            let connected = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            connected.set_nodelay(true).ok();
            *stream = Some(connected);
        }
        let connection = stream.as_mut().expect("connected above");
        match tokio::time::timeout(ANSWER_DEADLINE, send(connection, &request.bytes, buffer)).await
        {
            Ok(Ok((status, retry_after, close))) => {
                if close {
                    *stream = None;
                }
                return Ok((status, retry_after, attempt > 0));
            }
            Ok(Err(error)) => last = error,
            Err(_) => {
                *stream = None;
                return Err(format!("no answer within {ANSWER_DEADLINE:?}"));
            }
        }
        *stream = None;
    }
    Err(last)
}

/// Writes `request` and reads one answer: its status, whether it has `Retry-After`, and
/// whether the server said it closes the connection.
async fn send(
    stream: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(u16, bool, bool), String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    read_answer(stream, buffer).await
}

/// Reads one answer (a head and a `Content-Length` body) into `buffer`: its status, whether it
/// has `Retry-After`, and whether the server said it closes the connection.
pub async fn read_answer(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<(u16, bool, bool), String> {
    buffer.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err(format!("closed after {} bytes", buffer.len()));
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(head) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let text = std::str::from_utf8(&buffer[..head]).map_err(|e| e.to_string())?;
        let header = |wanted: &str| {
            text.lines().skip(1).find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_owned())
            })
        };
        assert!(
            header("transfer-encoding").is_none(),
            "the generator reads Content-Length bodies only: {text}"
        );
        let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap_or(0));
        if buffer.len() >= head + 4 + length {
            let status = text
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no status line: {text}"))?;
            let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            return Ok((status, header("retry-after").is_some(), close));
        }
    }
}

/// Zipf (s = 1) over `n` ranks, 0 the most popular: the cumulative weights, searched with a
/// uniform draw.
pub struct Zipf(Vec<f64>);

impl Zipf {
    pub fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        let cumulative: Vec<f64> = (1..=n)
            .map(|k| {
                total += 1.0 / k as f64;
                total
            })
            .collect();
        Zipf(cumulative.into_iter().map(|c| c / total).collect())
    }

    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}
