//! Shared by the binary's end-to-end tests: starting `mandate serve` as a real process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The demo configuration (tenants acme, globex and ops; the demo agents and secrets).
pub const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo.toml");

/// Starts `mandate --data-dir DATA [ARGS...] serve` on an ephemeral loopback port and returns
/// the process and the issuer it printed. `args` are global flags such as `--config` or
/// `--database-url`. Standard output keeps being drained so the server never blocks on it.
pub fn serve(data: &Path, args: &[&str]) -> (Child, String) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("MANDATE_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let issuer = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        if let Some(rest) = line.trim().strip_prefix("issuer") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, issuer)
}
