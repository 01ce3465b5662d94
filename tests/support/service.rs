//! `shortener serve` as a process of its own, so that a test can pause it, signal it, read its
//! resident memory from `/proc` and its log from stderr. The binary is the one cargo built for
//! the test (a debug build, instrumented under coverage), or `SHORTENER_SERVICE_BIN` when set
//! (`make soak` runs the release binary that way). Killed when dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{self, Scrape, TestResponse, eventually, send};
use crate::processes::free_port;

/// What every test instance gets unless the test says otherwise: test ports, the test code key,
/// clicks flushed often, and no per-client limits (every test client is 127.0.0.1).
const DEFAULTS: &[(&str, &str)] = &[
    ("SHORTENER_PUBLIC_BASE_URL", common::PUBLIC_BASE),
    ("SHORTENER_CODE_KEY", "integration-test-code-key"),
    ("SHORTENER_STATS_FLUSH_INTERVAL", "100ms"),
    ("SHORTENER_DB_ACQUIRE_TIMEOUT", "2s"),
    ("SHORTENER_RATE_LIMIT_CREATE", "off"),
    ("SHORTENER_RATE_LIMIT_REDIRECT", "off"),
    ("SHORTENER_RATE_LIMIT_STATS", "off"),
    ("SHORTENER_MAX_CONNECTIONS_PER_PEER", "100000"),
    ("SHORTENER_SHUTDOWN_GRACE", "10s"),
];

pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Its log so far (stderr, JSON lines).
    pub log: Arc<Mutex<String>>,
}

impl Service {
    /// The binary under test.
    pub fn binary() -> String {
        std::env::var("SHORTENER_SERVICE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shortener").to_owned())
    }

    /// Starts it on `db_url` and free ports, with [`DEFAULTS`] and then `env` (which wins).
    pub fn start(db_url: &str, env: &[(&str, &str)]) -> Service {
        let (port, admin_port) = (free_port(), free_port());
        let mut command = Command::new(Self::binary());
        command
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", db_url)
            .env("SHORTENER_LISTEN", format!("127.0.0.1:{port}"))
            .env("SHORTENER_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"));
        // Coverage runs write the child's profile too.
        if let Ok(profile) = std::env::var("LLVM_PROFILE_FILE") {
            command.env("LLVM_PROFILE_FILE", profile);
        }
        for (name, value) in DEFAULTS.iter().chain(env) {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the shortener binary runs");
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, kept) = (child.stderr.take().unwrap(), Arc::clone(&log));
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Service {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            admin: ([127, 0, 0, 1], admin_port).into(),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether its log has said `text` yet.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().contains(text)
    }

    /// Its log lines at `level` (JSON lines' `"level"`).
    pub fn lines_at(&self, level: &str) -> Vec<String> {
        let wanted = format!("\"level\":\"{level}\"");
        self.log
            .lock()
            .unwrap()
            .lines()
            .filter(|line| line.contains(&wanted))
            .map(str::to_owned)
            .collect()
    }

    /// Its `/metrics`.
    pub async fn scrape(&self) -> Scrape {
        Scrape::parse(send(self.admin, "GET", "/metrics", &[], b"").await.text())
    }

    /// One series of its `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.scrape().await.value(name, labels)
    }

    /// Its `/readyz`: status and body, or `None` while the admin listener is not up.
    pub async fn readiness(&self) -> Option<(u16, serde_json::Value)> {
        let stream = tokio::net::TcpStream::connect(self.admin).await.ok()?;
        drop(stream);
        let response = send(self.admin, "GET", "/readyz", &[], b"").await;
        Some((response.status, response.json()))
    }

    /// `/readyz`'s `creates`, empty while the admin listener is not up.
    pub async fn creates(&self) -> String {
        match self.readiness().await {
            Some((_, body)) => body["creates"].as_str().unwrap_or_default().to_owned(),
            None => String::new(),
        }
    }

    pub async fn wait_creates(&self, state: &str) -> bool {
        eventually(Duration::from_secs(15), || async {
            self.creates().await == state
        })
        .await
    }

    /// Waits until it is ready and creating.
    pub async fn ready(&self) {
        let ready = eventually(Duration::from_secs(20), || async {
            matches!(self.readiness().await, Some((200, body)) if body["creates"] == "ready")
        })
        .await;
        assert!(
            ready,
            "the service did not become ready: {:?}\n{}",
            self.readiness().await,
            self.log.lock().unwrap()
        );
    }

    pub async fn shorten(&self, url: &str) -> TestResponse {
        let body = serde_json::json!({ "url": url }).to_string();
        send(
            self.addr,
            "POST",
            "/shorten",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
    }

    /// A link made here: its code.
    pub async fn create(&self, url: &str) -> String {
        let response = self.shorten(url).await;
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["code"].as_str().unwrap().to_owned()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Resident memory now (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the service is running");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/PID/status")
            * 1024
    }

    /// SIGTERM, then its exit status (within `within`).
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "it did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
