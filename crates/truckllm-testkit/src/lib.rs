//! Test harness: real `redis-server` processes on free loopback ports, each with its own data
//! directory, so tests can kill, restart and reconfigure them without touching anyone else's.
//!
//! A server is killed when its [`RedisServer`] is dropped, and a small watchdog kills it too
//! if the test process dies without unwinding, so no server outlives its test run.
//! A missing `redis-server` is a test failure that names the install step, never a skip.
//! [`postgres`] does the same for PostgreSQL servers.

pub mod postgres;

pub use postgres::PostgresServer;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts a server with no persistence on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--requirepass", "x"]`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            tls: false,
        };
        server.spawn();
        server
    }

    /// Starts a TLS-only server whose certificate (for 127.0.0.1) is signed by a fresh private
    /// CA, made with `openssl` in the server's directory; see [`RedisServer::ca_file`].
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        make_certificates(dir.path());
        let port = free_port();
        let file = |name: &str| dir.path().join(name).display().to_string();
        let extra_args = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let mut server = Self {
            child: None,
            port,
            dir,
            extra_args,
            tls: true,
        };
        server.spawn();
        server
    }

    /// The CA certificate (PEM) that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs a command with `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(self.auth_args())
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn auth_args(&self) -> Vec<String> {
        let pos = self.extra_args.iter().position(|a| a == "--requirepass");
        let mut args = match pos.and_then(|p| self.extra_args.get(p + 1)) {
            Some(pass) => vec!["--no-auth-warning".into(), "-a".into(), pass.clone()],
            None => Vec::new(),
        };
        if self.tls {
            args.extend([
                "--tls".into(),
                "--cacert".into(),
                self.ca_file().display().to_string(),
            ]);
        }
        args
    }

    fn spawn(&mut self) {
        let mut command = Command::new(redis_server_binary());
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("spawn redis-server");
        spawn_watchdog(child.id());
        self.child = Some(child);
        if self.tls {
            self.wait_until_cli_answers();
        } else {
            wait_until_ready(self.port, &self.auth_args());
        }
    }

    fn wait_until_cli_answers(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.cli(&["PING"]) == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "TLS redis-server on port {} did not answer PING within 30 s",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes `ca.crt`, and `server.crt`/`server.key` for 127.0.0.1 signed by it, in `dir` (uses
/// the `openssl` command).
pub fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (apt-get install openssl)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=truckllm-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// Path of `redis-server`, or a panic that says how to install it.
pub fn redis_server_binary() -> PathBuf {
    binary_on_path("redis-server").unwrap_or_else(|| {
        panic!(
            "redis-server not found on PATH. The tests start their own Redis: \
             install it with `sudo apt-get install redis-server` (or run `bash .ci/run`)."
        )
    })
}

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768–60999 by default),
/// from which every outgoing connection takes its source port. A port taken from that range
/// could be given to some process's outgoing connection (a gateway's pool to Postgres, say)
/// between the test choosing it and the server binding it, and the server would fail to start.
/// A Redis Cluster node also listens on its port + 10000 (the cluster bus), so the range stops
/// where that lands below the ephemeral range too, and clear of the range itself.
const TEST_PORTS: std::ops::Range<u16> = 20_000..22_768;

/// A port that was free a moment ago on 127.0.0.1, chosen at random from [`TEST_PORTS`] so
/// tests running at once rarely pick the same one, and outgoing connections never take it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..1000 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(u64::from(std::process::id()));
        let offset = u16::try_from(hasher.finish() % span).unwrap_or(0);
        let port = TEST_PORTS.start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Kills `pid` when this test process exits, even by abort or SIGKILL.
fn spawn_watchdog(pid: u32) {
    spawn_watchdog_script(pid, "kill -9 $PID", "");
}

/// Runs `stop` (with `$PID` set) once this test process has exited, then `after`; but only
/// while `pid` is still the process it was when the watchdog started (same start time in
/// `/proc/PID/stat`). A server a test stopped or killed early frees its pid, which the system
/// may give to another process, a later test binary say: that one must not be killed.
pub(crate) fn spawn_watchdog_script(pid: u32, stop: &str, after: &str) {
    let script = format!(
        "start() {{ cut -d' ' -f22 /proc/{pid}/stat 2>/dev/null; }}; born=$(start); \
         while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; \
         PID={pid}; if [ -n \"$born\" ] && [ \"$(start)\" = \"$born\" ]; then {stop}; fi; {after}",
        parent = std::process::id()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Waits (bounded) until the server answers PING.
fn wait_until_ready(port: u16, auth: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let password = auth.last().filter(|_| !auth.is_empty());
    while Instant::now() < deadline {
        if ping(port, password.map(String::as_str)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server on port {port} did not answer PING within 30 s");
}

fn ping(port: u16, password: Option<&str>) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut writer = &stream;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if let Some(pass) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pass}\r\n", pass.len());
        if writer.write_all(auth.as_bytes()).is_err() || reader.read_line(&mut line).is_err() {
            return false;
        }
        line.clear();
    }
    writer.write_all(b"PING\r\n").is_ok()
        && reader.read_line(&mut line).is_ok()
        && line.starts_with("+PONG")
}

/// A Redis Cluster of three primaries (no replicas) on free loopback ports, made with
/// `redis-cli --cluster create`; every node is killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A cluster whose nodes get `extra_args` too (e.g. AOF, so a restarted node keeps what it
    /// acknowledged).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ];
                args.extend_from_slice(extra_args);
                RedisServer::start_with(&args)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to kill and restart one (it rejoins with its `nodes.conf`).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Waits (bounded) until every node reports `cluster_state:ok`.
    pub fn wait_until_healthy(&self) {
        self.wait_until_ok();
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self
                .nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the test cluster did not reach cluster_state:ok within 60 s");
    }
}

/// What a [`FaultProxy`] does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass,
    /// Accept and swallow: nothing reaches the server, nothing comes back.
    Blackhole,
    /// Drop every connection, old and new.
    Reset,
}

/// A TCP proxy on a free loopback port in front of `target`, whose behaviour can be switched
/// at any time, for fault tests: timeouts must fire, nothing may hang.
pub struct FaultProxy {
    port: u16,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FaultProxy {
    pub fn start(target_port: u16) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU8, AtomicU64};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let mode = Arc::new(AtomicU8::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        let (m, g) = (Arc::clone(&mode), Arc::clone(&generation));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (m, g) = (Arc::clone(&m), Arc::clone(&g));
                std::thread::spawn(move || proxy_connection(client, target_port, &m, &g));
            }
        });
        Self {
            port,
            mode,
            generation,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn set(&self, mode: ProxyMode) {
        let code = match mode {
            ProxyMode::Pass => 0,
            ProxyMode::Blackhole => 1,
            ProxyMode::Reset => 2,
        };
        self.mode.store(code, std::sync::atomic::Ordering::SeqCst);
        // Connections opened before a change of mode are cut.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn proxy_connection(
    client: TcpStream,
    target_port: u16,
    mode: &std::sync::atomic::AtomicU8,
    generation: &std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    let born = generation.load(Ordering::SeqCst);
    match mode.load(Ordering::SeqCst) {
        2 => return,
        1 => {
            // Swallow whatever arrives until the peer gives up or the mode changes.
            let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
            let mut sink = [0u8; 4096];
            let mut reader = &client;
            while generation.load(Ordering::SeqCst) == born {
                match std::io::Read::read(&mut reader, &mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
        return;
    };
    let pairs = [
        (client.try_clone(), server.try_clone()),
        (server.try_clone(), client.try_clone()),
    ];
    let mut threads = Vec::new();
    for (from, to) in pairs {
        let (Ok(from), Ok(to)) = (from, to) else {
            return;
        };
        let generation = std::sync::Arc::clone(generation);
        threads.push(std::thread::spawn(move || {
            let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 16384];
            let (mut reader, mut writer) = (&from, &to);
            while generation.load(Ordering::SeqCst) == born {
                match std::io::Read::read(&mut reader, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// A real `prometheus-pushgateway` (the Debian package) on a free loopback port, killed on drop.
pub struct Pushgateway {
    child: Child,
    port: u16,
}

impl Pushgateway {
    pub fn start() -> Self {
        let port = free_port();
        let binary = binary_on_path("prometheus-pushgateway").unwrap_or_else(|| {
            panic!(
                "prometheus-pushgateway not found on PATH. Install it with \
                 `sudo apt-get install prometheus-pushgateway` (or run `bash .ci/run`)."
            )
        });
        let child = Command::new(binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus-pushgateway");
        spawn_watchdog(child.id());
        let gateway = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if gateway
                .get("/-/ready")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return gateway;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("prometheus-pushgateway on port {port} was not ready within 15 s");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Pushgateway's own `/metrics` page: every pushed group, with its labels.
    pub fn scrape(&self) -> String {
        let response = self.get("/metrics").expect("scrape the pushgateway");
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// A bare HTTP/1.1 GET; the whole response, headers included.
    fn get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).ok()?;
        Some(response)
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
