//! Real PostgreSQL servers for tests: Debian's PostgreSQL 15 (`initdb`, then `postgres` on a
//! free loopback port, its unix socket inside its own directory), never a cluster the machine
//! already runs.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: the server's directory is then
//! handed to the `postgres` system user and `initdb`/`postgres` run as that user. A server is
//! stopped and its directory removed on drop; a watchdog stops it too if the test process dies
//! without unwinding. [`PostgresServer::shared`] is one server per test process, in which each
//! test takes a database of its own ([`PostgresServer::fresh_database`]).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::free_port;

/// Where Debian's `postgresql` package puts PostgreSQL 15's programs.
pub const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A `postgres` server on 127.0.0.1 with trust authentication for the `postgres` role.
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    user: Option<(u32, u32)>,
    databases: AtomicU64,
    tls: bool,
}

impl PostgresServer {
    /// Runs `initdb` in a new temporary directory and starts the server on a free port.
    pub fn start() -> Self {
        let mut server = Self::prepare(false);
        server.spawn();
        server
    }

    /// Starts a server that takes TLS connections only (`hostssl` in `pg_hba.conf`), with a
    /// certificate for 127.0.0.1 signed by a fresh private CA; see [`ca_file`](Self::ca_file).
    pub fn start_tls() -> Self {
        let mut server = Self::prepare(true);
        crate::make_certificates(server.dir.path());
        for file in ["server.crt", "server.key", "ca.crt"] {
            server.hand_over(&server.dir.path().join(file));
        }
        std::fs::write(
            server.data_dir().join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        server.spawn();
        server
    }

    fn prepare(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for postgres");
        let server = Self {
            child: None,
            port: free_port(),
            dir,
            user: unprivileged_user(),
            databases: AtomicU64::new(0),
            tls,
        };
        server.hand_over(server.dir.path());
        server.initdb();
        server
    }

    /// Gives a file or directory to the user the server runs as.
    fn hand_over(&self, path: &Path) {
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .expect("hand a file to the postgres user");
        }
    }

    /// The CA certificate (PEM) that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// One server for the whole test process, started on first use. Tests that share it take
    /// a database each ([`fresh_database`](Self::fresh_database)); the watchdog stops it and
    /// removes its directory when the process exits.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(PostgresServer::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of one database of this server.
    pub fn database_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        self.psql(&format!("CREATE DATABASE {name}"));
        self.database_url(&name)
    }

    /// Runs one SQL command with `psql` against the `postgres` database and returns its
    /// unaligned output; panics with psql's error if it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Like [`psql`](Self::psql), in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let output = Command::new(binary("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Stops the server at once (PostgreSQL's immediate shutdown: no checkpoint, connections
    /// cut, as in a crash; what was committed survives through the WAL).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-QUIT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn initdb(&self) {
        let mut command = Command::new(binary("initdb"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .args(["--locale", "C"]);
        let output = self
            .as_server_user(&mut command)
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn spawn(&mut self) {
        let mut command = Command::new(binary("postgres"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_connections=300"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.tls {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            command
                .args(["-c", "ssl=on"])
                .args(["-c", &format!("ssl_cert_file={}", file("server.crt"))])
                .args(["-c", &format!("ssl_key_file={}", file("server.key"))]);
        }
        let child = self
            .as_server_user(&mut command)
            .spawn()
            .expect("spawn postgres");
        spawn_watchdog(child.id(), self.dir.path());
        self.child = Some(child);
        self.wait_until_ready();
    }

    fn as_server_user<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.current_dir(self.dir.path())
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = Command::new(binary("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("postgres on port {} was not ready within 60 s", self.port);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of one of PostgreSQL 15's programs, or a panic that says how to install them.
pub fn binary(name: &str) -> PathBuf {
    let path = Path::new(POSTGRES_BIN).join(name);
    assert!(
        path.is_file(),
        "{} not found. The tests start their own PostgreSQL 15: install it with \
         `sudo apt-get install postgresql` (or run `bash .ci/run`).",
        path.display()
    );
    path
}

/// The `postgres` system user's uid and gid when this process runs as root (PostgreSQL will
/// not run as root); `None` otherwise.
fn unprivileged_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").arg(flag).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    if id("-u")? != 0 {
        return None;
    }
    let lookup = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "running as root and there is no `postgres` user to run PostgreSQL as: \
                     install the `postgresql` package (`bash .ci/run`)"
                )
            })
    };
    Some((lookup("-u"), lookup("-g")))
}

/// Stops `pid` (immediate shutdown) and removes `dir` when this test process exits, even by
/// abort or SIGKILL; a pid no longer the server's is left alone (see
/// [`crate::spawn_watchdog_script`]). The server's own directory is left alone while the
/// server runs.
fn spawn_watchdog(pid: u32, dir: &Path) {
    let stop = "kill -QUIT $PID 2>/dev/null; sleep 1; \
                [ \"$(start)\" = \"$born\" ] && kill -9 $PID 2>/dev/null";
    crate::spawn_watchdog_script(pid, stop, &format!("rm -rf '{}'", dir.display()));
}
