//! `demo-crm`: the demo CRM on its own, in front of a running Mandate server.

use anyhow::Context;
use clap::Parser;
use demo_crm::{Crm, app, guard_builder};
use mandate_guard::FeedCredential;
use std::net::SocketAddr;
use std::sync::Arc;

/// The demo CRM (REST and MCP), protected by mandate-guard.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The Mandate issuer whose tokens are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// This CRM's resource identifier (the tokens' audience).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    resource: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The CRM's resource credential for the revocation feed and for reporting refused
    /// requests to the issuer's audit log; the secret comes from DEMO_CRM_SECRET. Without it
    /// revoked tokens stay valid until they expire and refusals are not audited.
    #[arg(long)]
    feed_client_id: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let guard = guard_builder(&args.issuer, &args.resource)
        .build()
        .await
        .context("discovering the issuer")?;
    // The resource credential also reports refused requests to the issuer's audit log.
    let (_feed, reports) = match args.feed_client_id {
        Some(client_id) => {
            let secret = std::env::var("DEMO_CRM_SECRET")
                .context("--feed-client-id needs DEMO_CRM_SECRET")?;
            let credential = FeedCredential { client_id, secret };
            let reports = guard.report_denials(credential.clone())?;
            (Some(guard.follow_revocations(credential)?), Some(reports))
        }
        None => (None, None),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("Demo CRM listening on http://{}", listener.local_addr()?);
    let served = axum::serve(
        listener,
        app(guard, Arc::new(Crm::seeded())).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving HTTP");
    if let Some(reports) = reports {
        reports.shutdown().await;
    }
    served
}
