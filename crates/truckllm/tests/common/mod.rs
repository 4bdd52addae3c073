//! Shared by the process tests: a `truckllm` child process that is started, waited for
//! (its first line on stdout is its banner), and stopped gracefully or killed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A `truckllm` child process, killed on drop unless stopped first.
pub struct Process(Child);

impl Process {
    /// Starts `truckllm ARGS` with extra environment and waits for its banner.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_truckllm"))
            .args(args)
            .envs(env.iter().copied())
            .env_remove("TRUCKLLM_STORE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn truckllm");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut stderr = child.stderr.take().expect("stderr");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("banner");
        if !line.contains("://") {
            // No banner: the process failed to start, and its log says why.
            let _ = child.wait();
            let mut log = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
            panic!("unexpected banner: {line:?}; truckllm {args:?} wrote:\n{log}");
        }
        // Keep reading so the child never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Process(child)
    }

    /// Sends SIGTERM (a graceful shutdown) without waiting.
    pub fn terminate(&self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.0.wait().expect("wait")
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        self.terminate();
        let status = self.wait();
        assert!(status.success(), "graceful exit: {status}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
