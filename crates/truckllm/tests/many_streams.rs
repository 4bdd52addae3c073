//! Many streams held open at once through a gateway process: `truckllm bench streams` starts
//! mock-upstream (slow streams) and `truckllm serve`, opens 200 streaming requests, each on
//! its own connection, and reads every one to its end. Every stream must get its first chunk
//! and end with `[DONE]`; the bench exits with failure otherwise. Memory figures are printed
//! but never asserted (they belong to BENCHMARKS.md, from release builds). No timed assertion:
//! the bench's own guard only turns a hang into a failure.

use std::process::Command;

#[test]
fn two_hundred_streams_held_open_through_the_gateway_all_complete() {
    let output = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args([
            "bench",
            "streams",
            "--streams",
            "200",
            "--chunk-interval-ms",
            "200",
            "--chunks",
            "30",
            "--opening",
            "50",
        ])
        .env_remove("TRUCKLLM_STORE")
        .output()
        .expect("run truckllm bench streams");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("| streams that had their first chunk | 200 of 200 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| streams completed with [DONE] | 200 of 200 |"),
        "{stdout}"
    );
    assert!(stdout.contains("| streams failed | 0 |"), "{stdout}");
}
