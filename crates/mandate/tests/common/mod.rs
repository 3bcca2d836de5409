//! Shared by the binary's end-to-end tests: starting `mandate serve` as a real process.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The demo configuration (tenants acme, globex and ops; the demo agents and secrets).
pub const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo.toml");

/// Starts `mandate --data-dir DATA [ARGS...] serve` on an ephemeral loopback port and returns
/// the process and the issuer it printed. `args` are global flags such as `--config` or
/// `--database-url`. Standard output keeps being drained so the server never blocks on it.
pub fn serve(data: &Path, args: &[&str]) -> (Child, String) {
    let server = spawn_serve(data, args, &["--listen", "127.0.0.1:0"], &[]);
    wait_for_issuer(server, &stderr_log(data))
}

/// Where [`spawn_serve`] sends the server's standard error: beside its data directory.
pub fn stderr_log(data: &Path) -> std::path::PathBuf {
    data.with_extension("stderr.log")
}

/// Starts `mandate --data-dir DATA [ARGS...] serve [SERVE_ARGS...]` with extra environment
/// variables, without waiting for it: see [`wait_for_issuer`].
pub fn spawn_serve(data: &Path, args: &[&str], serve_args: &[&str], env: &[(&str, &str)]) -> Child {
    let stderr = std::fs::File::create(stderr_log(data)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .arg("serve")
        .args(serve_args)
        .env_remove("MANDATE_DATABASE_URL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits until a started server prints its issuer; returns it with the process. If it exits
/// first, the panic shows what it wrote to `log`.
pub fn wait_for_issuer(mut server: Child, log: &Path) -> (Child, String) {
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let issuer = loop {
        let Some(line) = lines.next() else {
            let _ = server.wait();
            panic!(
                "serve exited early:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("issuer") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, issuer)
}
