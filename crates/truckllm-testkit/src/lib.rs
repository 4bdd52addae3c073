//! Test harness: real `redis-server` processes on free loopback ports, each with its own data
//! directory, so tests can kill, restart and reconfigure them without touching anyone else's.
//!
//! A server is killed when its [`RedisServer`] is dropped, and a small watchdog kills it too
//! if the test process dies without unwinding, so no server outlives its test run.
//! A missing `redis-server` is a test failure that names the install step, never a skip.

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
        };
        server.spawn();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
        match pos.and_then(|p| self.extra_args.get(p + 1)) {
            Some(pass) => vec!["--no-auth-warning".into(), "-a".into(), pass.clone()],
            None => Vec::new(),
        }
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
        wait_until_ready(self.port, &self.auth_args());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Path of `redis-server`, or a panic that says how to install it.
pub fn redis_server_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server not found on PATH. The tests start their own Redis: \
             install it with `sudo apt-get install redis-server` (or run `bash .ci/run`)."
        )
    })
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Kills `pid` when this test process exits, even by abort or SIGKILL.
fn spawn_watchdog(pid: u32) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null",
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
    let deadline = Instant::now() + Duration::from_secs(10);
    let password = auth.last().filter(|_| !auth.is_empty());
    while Instant::now() < deadline {
        if ping(port, password.map(String::as_str)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server on port {port} did not answer PING within 10 s");
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
