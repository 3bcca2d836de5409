//! `mandate serve`: start the server and say what to do next.

use crate::cli::{Global, ServeArgs};
use mandate_server::Application;
use mandate_server::config::{self, Overrides};

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        issuer: args.issuer,
        data_dir: global.data_dir.clone(),
        database_url: global.database_url.clone(),
    };
    let config = config::load(global.config.as_deref(), &overrides)?;
    let database = if config.database_url.is_some() {
        "PostgreSQL/SQLite at the configured URL".to_owned()
    } else {
        format!("SQLite in {}", config.data_dir.join("mandate.db").display())
    };
    let app = Application::build(config).await?;
    let issuer = app.issuer().to_owned();
    let applied = app.applied().clone();
    if cfg!(feature = "bench-unaudited") {
        eprintln!(
            "WARNING: this is a benchmark build (feature bench-unaudited): it keeps NO audit \
             log and NO revocation feed. Never run it for real."
        );
    }
    println!("Mandate is running.");
    println!("  issuer     {issuer}");
    println!("  discovery  {issuer}/.well-known/oauth-authorization-server");
    println!("  database   {database} ({})", app.backend());
    if applied.is_empty() {
        println!();
        println!("Next: load the demo tenants, users and agents with");
        println!("  mandate serve --config examples/demo.toml");
        println!(
            "or define your own with `mandate tenant|user|scope|resource|agent create` (see --help)."
        );
    } else {
        println!(
            "  applied    {} tenants, {} users, {} scopes, {} resources, {} agents",
            applied.tenants, applied.users, applied.scopes, applied.resources, applied.agents
        );
    }
    println!("Press Ctrl-C to stop.");
    app.run_until(shutdown_signal()).await
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
