//! `mandate bulk-load` end to end: a few thousand grants loaded into the database of a running
//! `mandate serve`, then the server refreshes a sampled token (rotation, then reuse detection
//! of the retired one) and redeems a loaded code exactly as it would its own; the command's
//! output, fixture files, counts and its single audit event are checked.
//!
//! Runs on SQLite, and on PostgreSQL when `MANDATE_TEST_POSTGRES_URL` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mandate_core::time::{Clock, SystemClock};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const GRANTS: u64 = 2_500;

/// Runs `mandate` with the backend's global flags; returns (success, stdout, stderr).
fn mandate(data: &Path, url: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
    cmd.arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(common::DEMO);
    if let Some(url) = url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd
        .args(args)
        .env_remove("MANDATE_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(data: &Path, url: Option<&str>, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = mandate(data, url, &all);
    assert!(ok, "{args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Every page of a listing command, 1,000 at a time, following the `--after` hint the CLI
/// prints on standard error; the items of all pages, and how many pages there were.
fn every_page(data: &Path, url: Option<&str>, args: &[&str]) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut all = args.to_vec();
        all.extend(["--json", "--limit", "1000"]);
        if let Some(cursor) = &after {
            all.extend(["--after", cursor.as_str()]);
        }
        let (ok, out, err) = mandate(data, url, &all);
        assert!(ok, "{args:?} failed: {err}");
        let page: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert!(page.len() <= 1000);
        items.extend(page);
        pages += 1;
        match err.split("--after ").nth(1) {
            Some(rest) => after = Some(rest.trim().to_owned()),
            None => return (items, pages),
        }
    }
}

/// How many of the tables a load writes PostgreSQL has analyzed on request (`ANALYZE`, not
/// autovacuum), waiting up to 5 s for the statistics views to show it.
async fn analyzed_tables(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut analyzed = 0;
    for _ in 0..50 {
        analyzed = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL AND relname \
             IN ('users', 'grants', 'refresh_families', 'authorization_codes')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if analyzed == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    pool.close().await;
    analyzed
}

async fn token(http: &reqwest::Client, issuer: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http
        .post(format!("{issuer}/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn refresh(http: &reqwest::Client, issuer: &str, t: &str) -> (u16, Value) {
    token(
        http,
        issuer,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t),
            ("client_id", "cli-agent"),
        ],
    )
    .await
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn loaded_grants_work_like_real_ones(data: &Path, url: Option<&str>) {
    let server_args: Vec<&str> = match url {
        Some(u) => vec!["--database-url", u, "--config", common::DEMO],
        None => vec!["--config", common::DEMO],
    };
    // The server applies the demo configuration (tenant acme, agent cli-agent) at start; the
    // load then writes to its database while it runs.
    let (mut server, issuer) = common::serve(data, &server_args);
    let dir = data.parent().unwrap();
    let tokens_file = dir.join("refresh-tokens.txt");
    let codes_file = dir.join("codes.tsv");
    let grants = GRANTS.to_string();
    let load_started = SystemClock.now().unix();
    let (ok, out, err) = mandate(
        data,
        url,
        &[
            "bulk-load",
            "--grants",
            &grants,
            "--batch",
            "1000",
            "--refresh-tokens-out",
            tokens_file.to_str().unwrap(),
            "--sample",
            "10",
            "--codes-out",
            codes_file.to_str().unwrap(),
            "--codes",
            "4",
        ],
    );
    assert!(ok, "bulk-load failed: {err}");
    let load_ended = SystemClock.now().unix();
    if let Some(url) = url {
        assert_eq!(
            analyzed_tables(url).await,
            4,
            "the load leaves PostgreSQL's statistics current for every table it wrote"
        );
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "created 2500 users in tenant acme", "{out}");
    assert_eq!(
        lines[1], "issued 4 authorization codes (valid 60 s)",
        "{out}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("loaded 2500 grants and 2500 refresh families in ")
            && last.ends_with("/s)"),
        "{out}"
    );

    // The fixtures: only their owner can read them; the sample spreads over the load.
    assert_eq!(mode(&tokens_file), 0o600);
    assert_eq!(mode(&codes_file), 0o600);
    let tokens: Vec<String> = std::fs::read_to_string(&tokens_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(tokens.len(), 10);
    let named = |t: &String| mandate_core::refresh::name(t).is_some_and(|n| n.generation == 0);
    assert!(
        tokens.iter().all(named),
        "first tokens naming their families: {tokens:?}"
    );
    let codes = std::fs::read_to_string(&codes_file).unwrap();
    let codes: Vec<Vec<&str>> = codes.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(codes.len(), 4);
    assert!(codes.iter().all(|c| c.len() == 3));
    // Nothing the command printed holds a credential.
    for t in &tokens {
        assert!(!out.contains(t.as_str()) && !err.contains(t.as_str()));
    }

    let http = reqwest::Client::new();
    // A sampled token refreshes: rotated to a successor, which refreshes in turn.
    let (status, first) = refresh(&http, &issuer, &tokens[3]).await;
    assert_eq!(status, 200, "{first}");
    assert!(first["access_token"].as_str().unwrap().starts_with("ey"));
    assert_eq!(
        first["scope"],
        "contacts.read contacts.write tickets.read tickets.write"
    );
    let successor = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(successor, tokens[3]);
    let (status, second) = refresh(&http, &issuer, &successor).await;
    assert_eq!(status, 200, "{second}");
    let third = second["refresh_token"].as_str().unwrap().to_owned();
    // The retired loaded token presented again is reuse: refused, and the family is revoked.
    let (status, reused) = refresh(&http, &issuer, &tokens[3]).await;
    assert_eq!(status, 400, "{reused}");
    assert_eq!(reused["error"], "invalid_grant");
    let (status, after) = refresh(&http, &issuer, &third).await;
    assert_eq!(status, 400, "the family died with the reuse: {after}");
    // Other sampled tokens are untouched.
    let (status, other) = refresh(&http, &issuer, &tokens[9]).await;
    assert_eq!(status, 200, "{other}");

    // A loaded code is redeemed once, with its verifier and redirect URI.
    let code = &codes[1];
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code[0]),
        ("code_verifier", code[1]),
        ("redirect_uri", code[2]),
        ("client_id", "cli-agent"),
    ];
    let (status, redeemed) = token(&http, &issuer, &form).await;
    assert_eq!(status, 200, "{redeemed}");
    assert!(redeemed["refresh_token"].as_str().is_some());
    let (status, replayed) = token(&http, &issuer, &form).await;
    assert_eq!(status, 400, "{replayed}");
    // A wrong verifier burns nothing else: another code still needs its own verifier.
    let wrong = [
        ("grant_type", "authorization_code"),
        ("code", codes[2][0]),
        ("code_verifier", codes[3][1]),
        ("redirect_uri", codes[2][2]),
        ("client_id", "cli-agent"),
    ];
    let (status, _) = token(&http, &issuer, &wrong).await;
    assert_eq!(status, 400);

    // Counts: every grant is there (two were revoked by the reuse and the code replay).
    // Listings come 1,000 at a time; following the cursor visits each grant once.
    let (all, pages) = every_page(
        data,
        url,
        &[
            "grant",
            "list",
            "--tenant",
            "acme",
            "--agent",
            "cli-agent",
            "--all",
        ],
    );
    assert_eq!(all.len() as u64, GRANTS);
    assert_eq!(pages as u64, GRANTS.div_ceil(1000));
    let mut ids: Vec<&str> = all.iter().map(|g| g["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, GRANTS, "no grant on two pages");
    // Ids are UUIDv7 made while the load ran (so they sort in creation order and land at the
    // right edge of their indexes), and a grant's id holds the second it was created.
    for grant in &all {
        let id = grant["id"].as_str().unwrap();
        let hex = id.strip_prefix("g_").unwrap();
        assert_eq!(hex.len(), 32, "{id}");
        assert_eq!(&hex[12..13], "7", "a UUIDv7: {id}");
        let made = i64::try_from(u64::from_str_radix(&hex[..12], 16).unwrap() / 1000).unwrap();
        assert!(
            (load_started..=load_ended).contains(&made),
            "{id} was made at {made}, outside the load ({load_started}..={load_ended})"
        );
        assert_eq!(grant["created_at"], made, "{grant}");
    }
    let (live, _) = every_page(
        data,
        url,
        &["grant", "list", "--tenant", "acme", "--agent", "cli-agent"],
    );
    assert_eq!(live.len() as u64, GRANTS - 2);
    let (users, _) = every_page(data, url, &["user", "list", "--tenant", "acme"]);
    let load_users = users
        .iter()
        .filter(|u| u["login"].as_str().unwrap().starts_with("load-acme-"))
        .count() as u64;
    assert_eq!(
        load_users, GRANTS,
        "a user of its own for every loaded grant"
    );

    // Loading again adds users beside the first load's; each load is ONE audit event, with no
    // secret in it.
    let again = json(data, url, &["bulk-load", "--grants", "30"]);
    assert_eq!(again["grants"], 30);
    assert_eq!(again["users_created"], 30);
    let events = json(
        data,
        url,
        &["audit", "search", "--action", "grants.bulk_loaded"],
    );
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["detail"]["grants"], 2500);
    assert_eq!(events[0]["detail"]["codes"], 4);
    assert_eq!(events[0]["detail"]["users_created"], 2500);
    assert_eq!(events[0]["client_id"], "cli-agent");
    assert_eq!(events[0]["tenant_id"], "acme");
    assert_eq!(events[0]["actor_id"], "cli");
    let text = serde_json::to_string(&events).unwrap();
    for t in &tokens {
        assert!(!text.contains(t.as_str()));
    }
    let verify = json(data, url, &["audit", "verify"]);
    assert_eq!(verify["intact"], true, "{verify}");

    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn sqlite_bulk_loaded_grants_refresh_and_codes_redeem() {
    let dir = tempfile::tempdir().unwrap();
    loaded_grants_work_like_real_ones(&dir.path().join("data"), None).await;
}

#[tokio::test]
async fn postgres_bulk_loaded_grants_refresh_and_codes_redeem() {
    let Some(admin) = mandate_store::testing::postgres_test_url() else {
        eprintln!(
            "SKIPPED: set {} to run the PostgreSQL bulk-load test",
            mandate_store::testing::POSTGRES_TEST_URL_VAR
        );
        return;
    };
    let url = mandate_store::testing::fresh_postgres_database(&admin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = tokio::spawn({
        let url = url.clone();
        async move { loaded_grants_work_like_real_ones(&dir.path().join("data"), Some(&url)).await }
    })
    .await;
    mandate_store::testing::drop_postgres_database(&admin, &url)
        .await
        .unwrap();
    if let Err(failed) = outcome {
        std::panic::resume_unwind(failed.into_panic());
    }
}
