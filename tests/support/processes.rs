//! Servers of a test's own, on ports of their own, that the test may kill, pause or stop: a
//! Redis, a Redis Cluster of 3 masters with a replica each, a Postgres primary and a streaming
//! replica of it. The machine's own services are never touched. Each is stopped and its files
//! removed when it is dropped, also when the test panics.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (nothing listens on it right now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start on port {port}");
}

fn signal_pid(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) on a process this test started; no memory is involved.
    unsafe { libc::kill(pid, signal) == 0 }
}

fn run_checked(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .expect("redis-cli runs (make services installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A redis-server of the test's own, killed when dropped.
pub struct OwnRedis {
    child: Child,
    pub port: u16,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        OwnRedis::start_on(free_port())
    }

    pub fn start_on(port: u16) -> OwnRedis {
        OwnRedis::spawn(port, &[], None)
    }

    fn spawn(port: u16, extra: &[&str], dir: Option<&Path>) -> OwnRedis {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null());
        if let Some(dir) = dir {
            command.args(["--dir", dir.to_str().unwrap()]);
        }
        let child = command
            .spawn()
            .expect("redis-server runs (make services installs it)");
        let own = OwnRedis { child, port };
        wait_listening(port, Duration::from_secs(5), "redis-server");
        own
    }

    pub fn signal(&self, signal: i32) {
        assert!(signal_pid(self.child.id() as i32, signal), "kill({signal})");
    }

    /// Kills it (SIGKILL) and answers its port, to start another there later.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` against this server; answers what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        signal_pid(self.child.id() as i32, libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of the test's own: 3 masters with one replica each, with a node timeout of
/// one second so that a failover takes seconds, not the default quarter of a minute.
pub struct OwnCluster {
    nodes: Vec<Option<OwnRedis>>,
    /// Nodes stopped with SIGSTOP: still there, answering nothing.
    paused: Vec<OwnRedis>,
    dir: PathBuf,
}

impl OwnCluster {
    pub fn start() -> OwnCluster {
        let dir = own_dir("redis-cluster");
        let ports = cluster_ports(6);
        let mut nodes = Vec::new();
        for port in &ports {
            nodes.push(Some(cluster_node(*port, &dir)));
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        run_checked(
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", "1", "--cluster-yes"]),
        );
        let cluster = OwnCluster {
            nodes,
            paused: Vec::new(),
            dir,
        };
        cluster.wait_healthy(Duration::from_secs(20));
        cluster
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().flatten().map(|node| node.port).collect()
    }

    /// `host:port` of the three first nodes (the masters when the cluster was made).
    pub fn seeds(&self) -> String {
        self.live_ports()
            .iter()
            .take(3)
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `CLUSTER NODES` as one live node sees it.
    pub fn nodes_view(&self) -> String {
        redis_cli(self.live_ports()[0], &["CLUSTER", "NODES"])
    }

    /// Every live node says the cluster is ok, every slot has a master that is not failing,
    /// and every replica has finished its sync with its master.
    pub fn is_healthy(&self) -> bool {
        self.live_ports().iter().all(|&port| {
            let info = redis_cli(port, &["CLUSTER", "INFO"]);
            let replication = redis_cli(port, &["INFO", "replication"]);
            info.contains("cluster_state:ok")
                && !replication.contains("master_link_status:down")
                && !replication.contains("master_sync_in_progress:1")
        })
    }

    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.is_healthy() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the test cluster is not healthy:\n{}", self.nodes_view());
    }

    /// The port of the master that serves `key` now; `None` while the one that did is failing
    /// and no replica has taken over yet.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let port = self.live_ports()[0];
        let slot: u16 = redis_cli(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap();
        let view = redis_cli(port, &["CLUSTER", "NODES"]);
        for line in view.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                match (low.parse::<u16>(), high.parse::<u16>()) {
                    (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                let address = fields[1].split('@').next().unwrap();
                return Some(address.rsplit_once(':').unwrap().1.parse().unwrap());
            }
        }
        None
    }

    /// The ports of the masters now.
    pub fn masters(&self) -> Vec<u16> {
        let view = redis_cli(self.live_ports()[0], &["CLUSTER", "NODES"]);
        view.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                (fields.len() >= 3 && fields[2].contains("master") && !fields[2].contains("fail"))
                    .then(|| {
                    fields[1]
                        .split('@')
                        .next()?
                        .rsplit_once(':')?
                        .1
                        .parse()
                        .ok()
                })?
            })
            .collect()
    }

    /// Waits until every node agrees on who serves which slot (`redis-cli --cluster check`):
    /// after a reshard, gossip takes a moment to carry the new owners everywhere.
    pub fn wait_agreed(&self, timeout: Duration) {
        let seed = format!("127.0.0.1:{}", self.live_ports()[0]);
        let deadline = Instant::now() + timeout;
        loop {
            let check = Command::new("redis-cli")
                .args(["--cluster", "check", &seed])
                .output()
                .expect("redis-cli runs");
            if check.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster's nodes do not agree: {}",
                String::from_utf8_lossy(&check.stdout)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts a node and adds it to the cluster as a master without slots: its port.
    pub fn add_master(&mut self) -> u16 {
        let port = cluster_ports(1)[0];
        let node = cluster_node(port, &self.dir);
        self.wait_agreed(Duration::from_secs(30));
        let seed = format!("127.0.0.1:{}", self.live_ports()[0]);
        run_checked(Command::new("redis-cli").args([
            "--cluster",
            "add-node",
            &format!("127.0.0.1:{port}"),
            &seed,
        ]));
        self.nodes.push(Some(node));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !redis_cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the new node did not join");
            std::thread::sleep(Duration::from_millis(100));
        }
        port
    }

    /// Moves `slots` hash slots, with their keys, from the master on `from` to the master on
    /// `to` (`redis-cli --cluster reshard`): while a slot migrates, a client asking for a key
    /// already moved is answered `ASK`, and `MOVED` once the slot has.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        self.wait_agreed(Duration::from_secs(30));
        let id = |port: u16| redis_cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let seed = format!("127.0.0.1:{}", self.live_ports()[0]);
        run_checked(Command::new("redis-cli").args([
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &id(from),
            "--cluster-to",
            &id(to),
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]));
    }

    /// The keys the node on `port` holds.
    pub fn keys_on(&self, port: u16) -> u64 {
        redis_cli(port, &["DBSIZE"]).trim().parse().unwrap_or(0)
    }

    /// `redis-cli -c` (following redirections) through a live node.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.live_ports()[0].to_string();
        let output = Command::new("redis-cli")
            .args(["-c", "-h", "127.0.0.1", "-p", &port, "--raw"])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn take(&mut self, port: u16) -> OwnRedis {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.as_ref().is_some_and(|n| n.port == port))
            .expect("a live node on that port");
        node.take().unwrap()
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.take(port).kill();
    }

    /// Stops the node on `port` with SIGSTOP: its connections stay open and it answers
    /// nothing, as a hung host would. It is left out of every later question to the cluster.
    pub fn pause(&mut self, port: u16) {
        let node = self.take(port);
        node.signal(libc::SIGSTOP);
        self.paused.push(node);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        self.paused.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster node on `port`, its files in a folder of `dir`, with a node timeout of one
/// second.
fn cluster_node(port: u16, dir: &Path) -> OwnRedis {
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).unwrap();
    OwnRedis::spawn(
        port,
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            // A replica that never synced cannot take over: let the first full sync start at
            // once instead of after the default 5 s delay.
            "--repl-diskless-sync-delay",
            "0",
        ],
        Some(&node_dir),
    )
}

/// `count` free ports whose cluster bus ports (port + 10000) are free too, both below the
/// kernel's ephemeral range (32768 and up): a bus port in it can be taken by any outgoing
/// connection between this check and the node's start, and the node then fails to start.
fn cluster_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < count {
        let port = fastrand::u16(12_000..22_000);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !ports.contains(&port) && free(port) && free(port + 10_000) {
            ports.push(port);
        }
    }
    ports
}

/// A fresh directory for one server's files.
fn own_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shortener-test-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where the Postgres server programs are (the newest installed version).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|path| {
        path.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("PostgreSQL's server programs (make services installs them)")
}

/// Postgres refuses to run as root: as root, its programs run as the `postgres` user.
fn as_postgres(program: &Path) -> Command {
    // SAFETY: getuid(2) has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn give_to_postgres(dir: &Path) {
    // SAFETY: as above.
    if unsafe { libc::getuid() } == 0 {
        run_checked(Command::new("chown").args(["-R", "postgres:"]).arg(dir));
    }
}

/// A Postgres server of the test's own (trust authentication on loopback, like the machine's),
/// stopped and removed when dropped.
pub struct OwnPostgres {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

impl OwnPostgres {
    /// A new primary, started.
    pub fn start() -> OwnPostgres {
        let own = OwnPostgres::init();
        own.start_again();
        own
    }

    /// A new primary, not started yet: [`OwnPostgres::configure`] and
    /// [`OwnPostgres::write_file`] first, then [`OwnPostgres::start_again`].
    pub fn init() -> OwnPostgres {
        let bin = postgres_bin();
        let root = own_dir("postgres");
        give_to_postgres(&root);
        let dir = root.join("data");
        run_checked(as_postgres(&bin.join("initdb")).arg("-D").arg(&dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        let own = OwnPostgres {
            dir,
            port: free_port(),
            bin,
        };
        own.configure_own_ports();
        own
    }

    /// Writes `name` into the data directory, readable by the server only (as a TLS key must be).
    pub fn write_file(&self, name: &str, contents: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        give_to_postgres(&path);
    }

    /// A streaming replica of `primary`, from a fresh base backup.
    pub fn replica_of(primary: &OwnPostgres) -> OwnPostgres {
        let root = own_dir("postgres-replica");
        give_to_postgres(&root);
        let dir = root.join("data");
        run_checked(
            as_postgres(&primary.bin.join("pg_basebackup"))
                .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
                .args(["-U", "postgres", "-X", "stream", "-R", "--checkpoint=fast"])
                .arg("-D")
                .arg(&dir),
        );
        let own = OwnPostgres {
            dir,
            port: free_port(),
            bin: primary.bin.clone(),
        };
        own.configure_own_ports();
        own.configure(&[("hot_standby", "on")]);
        own.start_again();
        own
    }

    /// Its own port and socket directory, and no fsync (nothing here must survive a crash of
    /// the machine).
    fn configure_own_ports(&self) {
        let socket_dir = self.dir.display().to_string();
        let port = self.port.to_string();
        self.configure(&[
            ("port", &port),
            ("listen_addresses", "'127.0.0.1'"),
            ("unix_socket_directories", &format!("'{socket_dir}'")),
            ("fsync", "off"),
            ("max_connections", "200"),
        ]);
    }

    /// Adds `settings` to its configuration (the last of a name counts); a server that runs
    /// takes them at its next start.
    pub fn configure(&self, settings: &[(&str, &str)]) {
        let mut conf = String::new();
        for (name, value) in settings {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        let path = self.dir.join("postgresql.conf");
        let mut all = std::fs::read_to_string(&path).unwrap();
        all.push_str(&conf);
        std::fs::write(&path, all).unwrap();
    }

    /// Starts it (again, after [`OwnPostgres::stop`]) and waits until it accepts connections.
    pub fn start_again(&self) {
        run_checked(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.dir)
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
        );
        wait_listening(self.port, Duration::from_secs(10), "postgres");
    }

    /// Promotes it (a replica) to a primary and waits until it takes writes.
    pub fn promote(&self) {
        run_checked(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.dir)
                .args(["-w", "-t", "60", "promote"]),
        );
    }

    /// Stops it at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        run_checked(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.dir)
                .args(["-m", "immediate", "-w", "stop"]),
        );
    }

    /// `postgres://` URL of `database` on it.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Connection parameters over its Unix socket (in its data directory), which the
    /// pg_hba.conf of a test may treat apart from TCP.
    pub fn socket_params(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={database}",
            self.dir.display(),
            self.port
        )
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(root) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
