//! Helpers of the CLI tests: running the `shardis` binary.

use std::process::Command;

/// Runs the `shardis` binary with `args`; returns its exit code, stdout and stderr.
pub fn shardis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(args)
        .output()
        .expect("run shardis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
