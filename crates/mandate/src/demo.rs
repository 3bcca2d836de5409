//! `mandate demo`: the authorization server with the demo configuration and the demo CRM
//! beside it, following the revocation feed, with a walkthrough a person can paste.
//!
//! The demo starts from nothing each time (a temporary data directory unless `--data-dir` is
//! given), so its walkthrough always matches what is running.

use crate::cli::{DemoArgs, Global};
use crate::serve::shutdown_signal;
use anyhow::Context;
use mandate_core::pkce::CodeVerifier;
use mandate_core::random::opaque_secret;
use mandate_guard::FeedCredential;
use mandate_server::Application;
use mandate_server::config::{self, Overrides};
use mandate_server::system::OsEntropy;
use std::path::PathBuf;
use std::sync::Arc;

/// The demo configuration, compiled in so `mandate demo` works from any directory.
const DEMO_TOML: &str = include_str!("../../../examples/demo.toml");
/// The CRM's resource identifier and credential in the demo configuration.
const CRM_RESOURCE: &str = "http://127.0.0.1:8081";
const CRM_CLIENT_ID: &str = "demo-crm";
const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";
/// Where the walkthrough's browser lands with the code; nothing needs to listen there.
const CALLBACK: &str = "http://127.0.0.1:9999/callback";

pub async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<()> {
    let (data_dir, _temporary) = match &global.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::Builder::new().prefix("mandate-demo-").tempdir()?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let config_path = data_dir.join("demo.toml");
    std::fs::write(&config_path, DEMO_TOML)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let overrides = Overrides {
        listen: Some(args.listen),
        issuer: None,
        data_dir: Some(data_dir.clone()),
        database_url: global.database_url.clone(),
    };
    let config = config::load(Some(&config_path), &overrides)?;
    let server = Application::build(config).await?;
    let issuer = server.issuer().to_owned();
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    let guard = demo_crm::guard_builder(&issuer, CRM_RESOURCE)
        .build()
        .await
        .context("the demo CRM could not discover the server")?;
    let credential = FeedCredential {
        client_id: CRM_CLIENT_ID.into(),
        secret: CRM_SECRET.into(),
    };
    // Out-of-scope and refused calls at the CRM show up in the audit log as `access.denied`.
    let reports = guard.report_denials(credential.clone())?;
    let _feed = guard.follow_revocations(credential)?;
    let listener = tokio::net::TcpListener::bind(args.crm_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the demo CRM", args.crm_listen))?;
    let crm = format!("http://{}", listener.local_addr()?);
    print_walkthrough(
        &issuer,
        &crm,
        global.data_dir.is_some().then_some(&data_dir),
    );

    let app = demo_crm::app(guard, Arc::new(demo_crm::Crm::seeded()));
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    reports.shutdown().await;
    let _ = stop_server.send(());
    server_task.await??;
    served.context("serving the demo CRM")
}

fn print_walkthrough(issuer: &str, crm: &str, kept: Option<&PathBuf>) {
    let verifier = opaque_secret(&OsEntropy::default());
    let challenge = CodeVerifier::parse(&verifier)
        .map(|v| v.challenge())
        .unwrap_or_default();
    let authorize = format!(
        "{issuer}/authorize?response_type=code&client_id=cli-agent&redirect_uri={CALLBACK}\
         &scope=contacts.read+tickets.write&state=demo&resource={CRM_RESOURCE}\
         &code_challenge={challenge}&code_challenge_method=S256"
    );
    // This very binary, so the admin commands work whether or not `mandate` is on the PATH.
    let cli = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "mandate".into());
    let data = match kept {
        Some(dir) => format!("{} (kept)", dir.display()),
        None => "a temporary directory, deleted on exit".to_owned(),
    };
    println!(
        r#"Mandate demo is running.
  authorization server  {issuer}
  demo CRM              {crm}   (REST; MCP at {crm}/mcp; audience {CRM_RESOURCE})
  data                  {data}

People (password: <login>-demo-password): alice and bob at Acme Corp, carol at Globex Inc.,
olivia (Operations) who runs the deployment.
Agents: svc-agent (a service, client credentials), cli-agent and mcp-assistant (act for a person),
orchestrator (delegates by token exchange), admin-cli (the operator's admin API identity).
The commands below use curl and jq.

1. A service identity calls the CRM with a 15-minute token:
   TOKEN=$(curl -s -u svc-agent:demo-svc-agent-secret-0123456789abcdef \
     -d grant_type=client_credentials -d scope=tickets.read {issuer}/token | jq -r .access_token)
   curl -s -H "Authorization: Bearer $TOKEN" {crm}/tickets | jq
   curl -si -H "Authorization: Bearer $TOKEN" {crm}/billing     # 403 insufficient_scope

2. An agent acts for alice (authorization code + PKCE). Open in a browser:
   {authorize}
   Log in as alice / alice-demo-password and approve one or both scopes. The browser then
   fails to load {CALLBACK}?code=...; copy the code from its address bar:
   TOKEN=$(curl -s -d grant_type=authorization_code -d client_id=cli-agent \
     -d redirect_uri={CALLBACK} -d code_verifier={verifier} \
     -d code=PASTE_CODE_HERE {issuer}/token | jq -r .access_token)
   curl -s -H "Authorization: Bearer $TOKEN" {crm}/contacts | jq     # alice, acme's contacts only

3. An orchestrator acts for alice: it exchanges her token (RFC 8693) for a narrower one, and the
   CRM sees alice as the subject and the orchestrator in the chain:
   DELEGATED=$(curl -s -u orchestrator:demo-orchestrator-secret-0123456789abcdef \
     -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d subject_token=$TOKEN \
     -d subject_token_type=urn:ietf:params:oauth:token-type:access_token \
     -d scope=contacts.read {issuer}/token | jq -r .access_token)
   curl -s -H "Authorization: Bearer $DELEGATED" {crm}/contacts | jq .caller   # acting_through

4. Revoke alice's token; the CRM refuses it within a second, long before it expires:
   curl -s -d client_id=cli-agent -d token=$TOKEN {issuer}/revoke
   curl -si -H "Authorization: Bearer $TOKEN" {crm}/contacts         # 401 invalid_token

5. MCP: point an MCP client at {crm}/mcp. It finds Mandate through
   {crm}/.well-known/oauth-protected-resource; log in as carol to see only Globex data.
   Calling read_billing without billing.read answers 403 insufficient_scope (step-up).

6. Administer through the admin API (OpenAPI: {issuer}/admin/v1/openapi.json), remotely:
   export MANDATE_CLIENT_ID=admin-cli MANDATE_CLIENT_SECRET=demo-admin-cli-secret-0123456789abcdef
   {cli} --server {issuer} grant list
   {cli} --server {issuer} grant revoke-all --user alice   # offboarding
   curl -si -H "Authorization: Bearer $DELEGATED" {crm}/contacts      # 401: the chain died too
   Or in the browser, the admin console: {issuer}/admin/console/
   (alice administers Acme Corp only; olivia, an operator, every tenant).

Press Ctrl-C to stop."#
    );
}
