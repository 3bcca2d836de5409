//! `mandate guard`: the guard as a reverse proxy in front of any HTTP API.

use crate::cli::GuardArgs;
use crate::serve::shutdown_signal;
use anyhow::Context;
use mandate_guard::proxy::{ProxyConfig, proxy_router};
use mandate_guard::{FeedCredential, Guard};

pub async fn run(args: GuardArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.routes)
        .with_context(|| format!("reading {}", args.routes.display()))?;
    let routes = ProxyConfig::from_toml(&text)?;
    let credential = match args.feed_client_id {
        Some(client_id) => {
            let secret = std::env::var("MANDATE_GUARD_FEED_SECRET")
                .context("--feed-client-id needs MANDATE_GUARD_FEED_SECRET")?;
            Some(FeedCredential { client_id, secret })
        }
        None => None,
    };
    let mut builder = Guard::builder(&args.issuer, &args.resource);
    if args.accept_api_keys {
        let credential = credential
            .clone()
            .context("--accept-api-keys needs --feed-client-id")?;
        builder = builder.accept_api_keys(credential);
    }
    let guard = builder.build().await.context("discovering the issuer")?;
    let reports = match &credential {
        Some(credential) if args.report_denials => Some(guard.report_denials(credential.clone())?),
        _ => None,
    };
    let _feed = match credential {
        Some(credential) => Some(guard.follow_revocations(credential)?),
        None => {
            tracing::warn!("no --feed-client-id: revoked tokens stay valid until they expire");
            None
        }
    };
    let router = proxy_router(guard, &args.upstream, routes)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("Mandate guard for {} is running.", args.resource);
    println!("  listening  http://{}", listener.local_addr()?);
    println!("  upstream   {}", args.upstream);
    println!("  issuer     {}", args.issuer);
    if args.accept_api_keys {
        println!("  API keys   accepted (migration mode, checked by introspection)");
    }
    if reports.is_some() {
        println!("  denials    reported to the issuer's audit log");
    }
    // The peer address goes into denial reports.
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving HTTP");
    if let Some(reports) = reports {
        reports.shutdown().await;
    }
    served
}
