//! The `mandate` command line: `serve`, `demo`, `guard`, and administration of tenants, users,
//! scopes, resources, agents, grants, API keys, admin roles and signing keys, against the
//! configured database or a remote server's admin API (`--server`); `bulk-load` for benchmark
//! fixtures.
//!
//! Thin by design: flags are parsed here, the work is done by `mandate-server` and
//! `mandate-store`.

mod admin;
mod audit;
mod bulk_load;
mod cli;
mod demo;
mod guard;
mod output;
mod remote;
mod serve;
mod signing_key;

use clap::Parser;
use cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system promptly (argon2id's 19 MiB scratch per password
/// hash would otherwise stay in glibc's arenas) and is faster on the allocation-heavy request
/// path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A bulk load's statements insert 50,000 rows each by design; sqlx's warning for
    // statements over a second would print a line per batch.
    let default = match cli.command {
        Command::BulkLoad(_) => "info,sqlx=warn,sqlx::query=error,tower_http=warn",
        _ => "info,sqlx=warn,tower_http=warn",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Demo(args) => demo::run(&cli.global, args).await,
        Command::Guard(args) => guard::run(args).await,
        Command::Tenant(cmd) => admin::tenant(&cli.global, cmd).await,
        Command::User(cmd) => admin::user(&cli.global, cmd).await,
        Command::Scope(cmd) => admin::scope(&cli.global, cmd).await,
        Command::Resource(cmd) => admin::resource(&cli.global, cmd).await,
        Command::Agent(cmd) => admin::agent(&cli.global, cmd).await,
        Command::Grant(cmd) => admin::grant(&cli.global, cmd).await,
        Command::ApiKey(cmd) => admin::api_key(&cli.global, cmd).await,
        Command::AdminRole(cmd) => admin::admin_role(&cli.global, cmd).await,
        Command::Audit(cmd) => audit::run(&cli.global, cmd).await,
        Command::SigningKey(cmd) => signing_key::run(&cli.global, cmd).await,
        Command::BulkLoad(args) => bulk_load::run(&cli.global, args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
