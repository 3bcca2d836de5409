//! `mandate-loadgen`: loopback HTTP/1.1 keep-alive load where every request carries a value of
//! its own, read one per line from a file: a form body (`--bodies`) or a bearer token
//! (`--bearers`).
//!
//! Why it exists: `oha`, which `bench/run.sh` uses for everything else, sends the same request
//! over and over. Refresh tokens and authorization codes are single use, so the second request
//! with the same body measures only the cheap refusal; and a guard caches a validated token, so
//! the uncached case needs a distinct token per request. Each line is used exactly once; the
//! run ends at `--duration` or when the lines run out, whichever comes first, and reports
//! requests/s over the time it actually ran.
//!
//! Output is one JSON object ([`report::Summary`]) on standard output, which the benchmark
//! script parses alongside oha's. Nothing it reads (tokens, codes) is ever printed.

mod report;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(
    name = "mandate-loadgen",
    about = "One line per request: bodies or bearer tokens"
)]
struct Args {
    /// The URL to send every request to (http://127.0.0.1:PORT/path).
    url: String,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "POST")]
    method: String,
    /// Concurrent keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 32)]
    connections: usize,
    /// Stop sending after this many seconds (requests in flight complete).
    #[arg(short = 'z', long, default_value_t = 10.0)]
    duration: f64,
    /// A file of request bodies, one per line (sent as application/x-www-form-urlencoded).
    #[arg(long, conflicts_with = "bearers")]
    bodies: Option<std::path::PathBuf>,
    /// A file of bearer tokens, one per line (sent as `Authorization: Bearer <line>`).
    #[arg(long)]
    bearers: Option<std::path::PathBuf>,
    /// `client_id:secret` for HTTP Basic client authentication on every request.
    #[arg(short = 'a', long)]
    basic: Option<String>,
    /// From every 200 response (a JSON object), keep this string field, e.g. `access_token`,
    /// and write the values one per line to --extract-to (mode 0600): how the benchmark gets
    /// many distinct access tokens for the uncached guard case. Fixtures only.
    #[arg(long, requires = "extract_to")]
    extract: Option<String>,
    #[arg(long, requires = "extract")]
    extract_to: Option<std::path::PathBuf>,
}

/// The parts of a request that are the same every time.
struct Target {
    uri: hyper::Uri,
    host: String,
    method: hyper::Method,
    basic: Option<String>,
    lines: Vec<String>,
    as_bearer: bool,
    extract: Option<String>,
}

/// One connection's results.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
    extracted: Vec<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(summary) => match serde_json::to_string_pretty(&summary) {
            Ok(text) => {
                println!("{text}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<report::Summary> {
    let (path, as_bearer) = match (&args.bodies, &args.bearers) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        _ => bail!("give --bodies FILE or --bearers FILE"),
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let uri: hyper::Uri = args.url.parse().context("parsing the URL")?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs (loopback benchmarks)");
    }
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .context("the URL has no host")?;
    use base64::Engine;
    let target = Arc::new(Target {
        basic: args.basic.as_ref().map(|b| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        }),
        method: args.method.parse().context("parsing the method")?,
        uri,
        host,
        lines,
        as_bearer,
        extract: args.extract.clone(),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections.max(1) {
        let target = Arc::clone(&target);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(connection(target, next, deadline)));
    }
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await.context("a connection task failed")?);
    }
    let elapsed = started.elapsed();
    if let Some(path) = &args.extract_to {
        write_private(path, tallies.iter().flat_map(|t| t.extracted.iter()))?;
    }
    let used = next.load(Ordering::Relaxed).min(target.lines.len());
    Ok(report::Summary::new(
        tallies
            .into_iter()
            .map(|t| (t.latencies_us, t.statuses, t.errors)),
        elapsed,
        used >= target.lines.len(),
        target.lines.len(),
    ))
}

/// One keep-alive connection: takes the next unused line, sends it, waits for the whole
/// response, until the deadline or the lines run out. Reconnects after an error.
async fn connection(target: Arc<Target>, next: Arc<AtomicUsize>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    while Instant::now() < deadline {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(line) = target.lines.get(i) else {
            break;
        };
        if sender.is_none() {
            sender = connect(&target.host).await.ok();
        }
        let Some(s) = sender.as_mut() else {
            tally.errors += 1;
            continue;
        };
        let request = match build(&target, line) {
            Ok(r) => r,
            Err(_) => {
                tally.errors += 1;
                continue;
            }
        };
        let sent = Instant::now();
        match send(s, request).await {
            Ok((status, body)) => {
                let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                tally.latencies_us.push(us);
                *tally.statuses.entry(status).or_default() += 1;
                if let (200, Some(field)) = (status, &target.extract)
                    && let Some(value) = extract(&body, field)
                {
                    tally.extracted.push(value);
                }
            }
            Err(_) => {
                tally.errors += 1;
                sender = None;
            }
        }
    }
    tally
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(host: &str) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn build(target: &Target, line: &str) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut req = Request::builder()
        .method(target.method.clone())
        .uri(target.uri.clone())
        .header(http::header::HOST, &target.host);
    if let Some(basic) = &target.basic {
        req = req.header(http::header::AUTHORIZATION, basic);
    }
    let body = if target.as_bearer {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {line}"));
        Bytes::new()
    } else {
        req = req.header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        Bytes::from(line.to_owned())
    };
    Ok(req.body(Full::new(body))?)
}

/// Sends one request and reads its whole body; returns the status code and the body.
async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// A string field of a JSON object body.
fn extract(body: &[u8], field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

/// Writes fixture lines to a file only its owner can read.
fn write_private<'a>(
    path: &std::path::Path,
    lines: impl Iterator<Item = &'a String>,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut out = std::io::BufWriter::new(file);
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
