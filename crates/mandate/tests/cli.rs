//! The `mandate` binary end to end: administration against a real SQLite file, then `serve`
//! on an ephemeral port issuing a token to the agent the CLI created, then revocation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn mandate(data: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("MANDATE_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(data: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = mandate(data, &all, None);
    assert!(ok, "{args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[tokio::test]
async fn administer_then_serve_then_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    json(&data, &["tenant", "create", "acme", "--name", "Acme Corp"]);
    json(
        &data,
        &[
            "scope",
            "create",
            "tickets.read",
            "--description",
            "Read tickets",
        ],
    );
    json(
        &data,
        &[
            "resource",
            "create",
            "http://127.0.0.1:8081",
            "--name",
            "CRM",
            "--scopes",
            "tickets.read",
        ],
    );
    let agent = json(
        &data,
        &[
            "agent",
            "create",
            "svc",
            "--kind",
            "confidential",
            "--grant-types",
            "client_credentials",
            "--max-scopes",
            "tickets.read",
            "--tenant",
            "acme",
            "--default-resource",
            "http://127.0.0.1:8081",
        ],
    );
    let secret = agent["client_secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert_eq!(secret.len(), 43);
    assert!(
        agent.get("secret_hash").is_none(),
        "the hash is not printed"
    );
    let listed = json(&data, &["agent", "list"]);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is never shown again"
    );

    let (ok, _, err) = mandate(
        &data,
        &["user", "create", "alice", "--tenant", "acme"],
        Some("alice-password-1\n"),
    );
    assert!(ok, "{err}");
    let users = json(&data, &["user", "list", "--tenant", "acme"]);
    assert_eq!(users[0]["login"], "alice");
    assert!(
        !users.to_string().contains("argon2"),
        "no password hash in output"
    );

    let (ok, table, _) = mandate(&data, &["tenant", "list"], None);
    assert!(ok && table.contains("Acme Corp"), "readable table: {table}");

    let (ok, _, err) = mandate(
        &data,
        &[
            "agent",
            "create",
            "bad",
            "--kind",
            "public",
            "--grant-types",
            "authorization_code",
            "--max-scopes",
            "nope.read",
            "--redirect-uri",
            "http://127.0.0.1/cb",
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("agents[0].max_scopes") && err.contains("nope.read"),
        "{err}"
    );

    // serve on an ephemeral port and read the issuer it prints
    let (mut server, issuer) = common::serve(&data, &[]);
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{issuer}/token"))
        .basic_auth("svc", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token: Value = resp.json().await.unwrap();
    let introspect = || async {
        http.post(format!("{issuer}/introspect"))
            .basic_auth("svc", Some(&secret))
            .form(&[("token", token["access_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(introspect().await["active"], true);

    let grants = json(&data, &["grant", "list", "--agent", "svc"]);
    let gid = grants[0]["id"].as_str().unwrap().to_owned();
    let revoked = json(
        &data,
        &["grant", "revoke", &gid, "--reason", "offboarding test"],
    );
    assert_eq!(revoked["was_active"], true);
    assert_eq!(
        introspect().await["active"],
        false,
        "revoked from the CLI while serving"
    );
    assert!(
        json(&data, &["grant", "list", "--agent", "svc"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        json(&data, &["grant", "list", "--agent", "svc", "--all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bulk: a fresh service grant, then everything of `svc` within acme, from the CLI.
    let again: Value = http
        .post(format!("{issuer}/token"))
        .basic_auth("svc", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bulk = json(
        &data,
        &["grant", "revoke-all", "--agent", "svc", "--tenant", "acme"],
    );
    assert_eq!(bulk["grants"], 1, "{bulk}");
    let (ok, _, err) = mandate(&data, &["grant", "revoke-all"], None);
    assert!(!ok && err.contains("--user, --tenant, --agent"), "{err}");
    let inactive: Value = http
        .post(format!("{issuer}/introspect"))
        .basic_auth("svc", Some(&secret))
        .form(&[("token", again["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inactive["active"], false);

    // `mandate guard` in front of an upstream that is not running: refusals come from the
    // guard itself; an authorised request is forwarded (and fails upstream with 502).
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[[routes]]\npath = \"/tickets\"\nscopes = [\"tickets.read\"]\n",
    )
    .unwrap();
    let mut guard = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args([
            "guard",
            "--issuer",
            &issuer,
            "--resource",
            "http://127.0.0.1:8081",
        ])
        .args([
            "--upstream",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--routes")
        .arg(&routes)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(guard.stdout.take().unwrap()).lines();
    let proxy = loop {
        let line = lines.next().expect("guard exited early").unwrap();
        if let Some(rest) = line.trim().strip_prefix("listening") {
            break rest.trim().to_owned();
        }
    };
    let fresh: Value = http
        .post(format!("{issuer}/token"))
        .basic_auth("svc", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = fresh["access_token"].as_str().unwrap();
    let status = |path: &'static str, token: Option<&str>| {
        let mut req = http.get(format!("{proxy}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/tickets", None).await, 401);
    assert_eq!(status("/elsewhere", Some(bearer)).await, 404);
    assert_eq!(status("/tickets", Some(bearer)).await, 502);
    guard.kill().unwrap();
    guard.wait().unwrap();

    server.kill().unwrap();
    server.wait().unwrap();
}

/// `mandate demo` starts both services and its walkthrough's first step works as printed.
#[tokio::test]
async fn demo_runs_the_server_and_the_crm_and_its_walkthrough_works() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--crm-listen",
            "127.0.0.1:0",
        ])
        .env_remove("MANDATE_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut field = |name: &str| loop {
        let line = lines.next().expect("demo exited early").unwrap();
        if let Some(rest) = line.trim().strip_prefix(name) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let issuer = field("authorization server");
    let crm = field("demo CRM");

    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{issuer}/token"))
        .basic_auth("svc-agent", Some("demo-svc-agent-secret-0123456789abcdef"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "tickets.read"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap();
    let tickets = http
        .get(format!("{crm}/tickets"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(tickets.status(), 200);
    let tickets: Value = tickets.json().await.unwrap();
    assert_eq!(tickets["caller"]["tenant"], "acme");
    let billing = http
        .get(format!("{crm}/billing"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(billing.status(), 403);

    // Ctrl-C (SIGTERM here) stops both services cleanly.
    let stopped = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(demo.wait().unwrap().success());
}

#[tokio::test]
async fn api_keys_are_created_listed_rotated_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    json(&data, &["tenant", "create", "acme"]);
    json(
        &data,
        &["scope", "create", "tickets.read", "--description", "Read"],
    );

    let created = json(
        &data,
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tickets.read",
            "--expires-in",
            "30d",
            "--name",
            "sync",
        ],
    );
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    assert!(mandate_core::api_key::ApiKey::parse(&key).is_ok(), "{key}");
    assert!(id.starts_with("mkid_"));
    assert_eq!(
        created["api_key"]["scopes"],
        serde_json::json!(["tickets.read"])
    );
    assert!(created["api_key"].get("hash").is_none());
    let created_at = created["api_key"]["created_at"].as_i64().unwrap();
    assert_eq!(
        created["api_key"]["expires_at"].as_i64().unwrap(),
        created_at + 30 * 86_400
    );

    // Refusals, each with a clear message.
    let (ok, _, err) = mandate(
        &data,
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tickets.read",
            "--expires-in",
            "91d",
            "--name",
            "x",
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("at most 7776000 seconds"), "{err}");
    let (ok, _, err) = mandate(
        &data,
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "billing.read",
            "--expires-in",
            "1d",
            "--name",
            "x",
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("not in the scope catalog"), "{err}");
    let (ok, _, err) = mandate(
        &data,
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tickets.read",
            "--name",
            "x",
        ],
        None,
    );
    assert!(!ok, "expiry is required");
    assert!(err.contains("--expires-in"), "{err}");

    // The text form shows the key once too.
    let (ok, out, _) = mandate(
        &data,
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tickets.read",
            "--expires-in",
            "12h",
            "--name",
            "text",
        ],
        None,
    );
    assert!(ok);
    assert!(out.contains("shown once") && out.contains("mk_"), "{out}");

    let rotated = json(&data, &["api-key", "rotate", &id, "--expires-in", "10d"]);
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["api_key"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(rotated["replaces"], id.as_str());
    let overlap_end = rotated["predecessor_expires_at"].as_i64().unwrap();
    assert!(
        overlap_end <= created_at + 86_400 + 5 && overlap_end > created_at,
        "{rotated}"
    );

    let revoked = json(&data, &["api-key", "revoke", &new_id, "--reason", "leaked"]);
    assert_eq!(revoked["was_active"], true);

    for args in [
        &["api-key", "list", "--tenant", "acme", "--json"][..],
        &["api-key", "list", "--tenant", "acme"][..],
    ] {
        let (ok, out, err) = mandate(&data, args, None);
        assert!(ok, "{err}");
        assert!(!out.contains("mk_"), "a key in the listing: {out}");
        assert!(!out.contains("sha256"), "a hash in the listing: {out}");
        assert!(out.contains(&id) && out.contains(&new_id), "{out}");
    }
    // On the local database too: one page, and the cursor of the next on standard error.
    let (ok, out, err) = mandate(
        &data,
        &[
            "api-key", "list", "--tenant", "acme", "--limit", "1", "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let cursor = err
        .split("--after ")
        .nth(1)
        .expect("a hint")
        .trim()
        .to_owned();
    let (ok, rest, err) = mandate(
        &data,
        &[
            "api-key", "list", "--tenant", "acme", "--after", &cursor, "--json",
        ],
        None,
    );
    assert!(ok && !err.contains("--after"), "{err}");
    let both = format!("{out}{rest}");
    assert!(both.contains(&id) && both.contains(&new_id), "{both}");
    let list = json(&data, &["api-key", "list", "--tenant", "acme"]);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 3);
    let old = items.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(old["replaced_by"], new_id.as_str());
    assert_eq!(old["expires_at"].as_i64().unwrap(), overlap_end);
    let new = items.iter().find(|k| k["id"] == new_id.as_str()).unwrap();
    assert!(new["revoked_at"].is_i64(), "{new}");
    assert_eq!(new["revoked_reason"], "leaked");
    assert_eq!(new["created_by"], "cli");

    let (ok, _, err) = mandate(
        &data,
        &["api-key", "rotate", &id, "--expires-in", "1d"],
        None,
    );
    assert!(!ok);
    assert!(err.contains("rotated before"), "{err}");
}

/// `mandate --server URL ...` administers a running server through its admin API, with
/// credentials from the environment: an operator reaches every tenant, a tenant admin's token
/// only their own, and what is changed remotely is what the server enforces.
#[tokio::test]
async fn the_cli_administers_a_remote_server_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, issuer) = common::serve(&data, &["--config", common::DEMO]);
    // Remote calls use no local database: point --data-dir somewhere empty to prove it.
    let elsewhere = dir.path().join("unused");
    let remote = |args: &[&str], env: &[(&str, &str)], stdin: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
        cmd.arg("--data-dir")
            .arg(&elsewhere)
            .args(["--server", &issuer])
            .args(args)
            .env_remove("MANDATE_ADMIN_TOKEN")
            .env_remove("MANDATE_CLIENT_ID")
            .env_remove("MANDATE_CLIENT_SECRET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let operator = [
        ("MANDATE_CLIENT_ID", "admin-cli"),
        (
            "MANDATE_CLIENT_SECRET",
            "demo-admin-cli-secret-0123456789abcdef",
        ),
    ];

    let (ok, _, err) = remote(&["tenant", "list"], &[], None);
    assert!(!ok && err.contains("needs credentials"), "{err}");
    let (ok, _, err) = remote(
        &["tenant", "list"],
        &[
            ("MANDATE_CLIENT_ID", "admin-cli"),
            ("MANDATE_CLIENT_SECRET", "wrong"),
        ],
        None,
    );
    assert!(!ok && err.contains("invalid_client"), "{err}");

    let (ok, out, err) = remote(&["tenant", "create", "initech", "--json"], &operator, None);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["id"],
        "initech"
    );
    let (ok, _, err) = remote(
        &["user", "create", "peter", "--tenant", "initech"],
        &operator,
        Some("peter-password-1\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = remote(
        &["user", "list", "--tenant", "initech", "--json"],
        &operator,
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["login"],
        "peter"
    );
    assert!(!elsewhere.exists(), "no local database was opened");

    // One page at a time: the next page's cursor comes from the API's Link header.
    let (ok, _, err) = remote(
        &["user", "create", "samir", "--tenant", "initech"],
        &operator,
        Some("samir-password-1\n"),
    );
    assert!(ok, "{err}");
    let page = |after: Option<&str>| {
        let mut args = vec![
            "user", "list", "--tenant", "initech", "--limit", "1", "--json",
        ];
        if let Some(cursor) = after {
            args.extend(["--after", cursor]);
        }
        let (ok, out, err) = remote(&args, &operator, None);
        assert!(ok, "{err}");
        let items: Value = serde_json::from_str(&out).unwrap();
        let next = err
            .split("--after ")
            .nth(1)
            .map(|rest| rest.trim().to_owned());
        (items, next)
    };
    let (first, next) = page(None);
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(first[0]["login"], "peter");
    let next = next.expect("the hint names the next page's cursor");
    let (second, after_last) = page(Some(&next));
    assert_eq!(second[0]["login"], "samir");
    assert_eq!(after_last, None, "no hint after the last page");

    // Give peter a tenant admin role remotely.
    let (ok, _, err) = remote(
        &[
            "admin-role",
            "set",
            "--user",
            "peter",
            "--role",
            "tenant-admin",
            "--tenant",
            "initech",
        ],
        &operator,
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, _) = remote(&["admin-role", "list"], &operator, None);
    assert!(
        ok && out.contains("tenant_admin") && out.contains("initech"),
        "{out}"
    );

    // Offboarding through the remote CLI ends bob's token at introspection at once.
    let http = reqwest::Client::new();
    let svc = http
        .post(format!("{issuer}/token"))
        .basic_auth("svc-agent", Some("demo-svc-agent-secret-0123456789abcdef"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let introspect = |token: String| {
        let http = http.clone();
        let issuer = issuer.clone();
        async move {
            http.post(format!("{issuer}/introspect"))
                .basic_auth("svc-agent", Some("demo-svc-agent-secret-0123456789abcdef"))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let svc_token = svc["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(svc_token.clone()).await["active"], true);
    let (ok, out, err) = remote(
        &[
            "grant",
            "revoke-all",
            "--agent",
            "svc-agent",
            "--tenant",
            "acme",
            "--json",
        ],
        &operator,
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["grants"], 1);
    assert_eq!(introspect(svc_token).await["active"], false);

    // A token from elsewhere (not for the admin API) is refused with the server's reason.
    let crm_token = http
        .post(format!("{issuer}/token"))
        .basic_auth("svc-agent", Some("demo-svc-agent-secret-0123456789abcdef"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let (ok, _, err) = remote(
        &["tenant", "list"],
        &[(
            "MANDATE_ADMIN_TOKEN",
            crm_token["access_token"].as_str().unwrap(),
        )],
        None,
    );
    assert!(
        !ok && err.contains("not for the admin API") && err.contains("401"),
        "{err}"
    );

    let (ok, _, err) = remote(&["tenant", "list"], &[], None);
    assert!(!ok, "{err}");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// `mandate audit verify` on a real SQLite file: intact after real commands, and after a row is
/// edited behind the server's back it names the event and exits non-zero.
#[tokio::test]
async fn audit_verify_reports_an_intact_chain_and_finds_an_edited_event() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    json(&data, &["tenant", "create", "acme"]);
    json(
        &data,
        &["scope", "create", "tickets.read", "--description", "Read"],
    );
    json(
        &data,
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tickets.read",
            "--expires-in",
            "1d",
            "--name",
            "sync",
        ],
    );
    let report = json(&data, &["audit", "verify"]);
    assert_eq!(report["intact"], true, "{report}");
    let checked = report["checked"].as_i64().unwrap();
    assert!(checked >= 3, "{report}");
    assert_eq!(report["head_seq"], checked);
    let (ok, text, _) = mandate(&data, &["audit", "verify"], None);
    assert!(ok && text.contains("audit chain intact"), "{text}");

    let url = format!("sqlite://{}", data.join("mandate.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("DROP TRIGGER events_no_update")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET actor_id = 'someone-else' WHERE seq = 2")
        .execute(&mut db)
        .await
        .unwrap();
    drop(db);
    let (report, err) = verify_finds_a_break(&data, "modified");
    assert_eq!(report["broken"]["seq"], 2);
    assert!(err.contains("event 2 was modified"), "{err}");
}

/// Runs `mandate audit verify --json`, which must exit non-zero and report a break of `kind`;
/// returns the report and what it wrote on standard error.
fn verify_finds_a_break(data: &std::path::Path, kind: &str) -> (Value, String) {
    let (ok, out, err) = mandate(data, &["audit", "verify", "--json"], None);
    assert!(!ok, "a broken chain exits non-zero");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["broken"]["kind"], kind);
    (report, err)
}

/// `mandate audit purge` on a real SQLite data directory: old events go, `audit verify` still
/// passes and names the signed checkpoint it starts from; `audit checkpoint` prints a JWS that
/// verifies with the server's published key; tampering with the start after the purge makes
/// `audit verify` exit non-zero.
#[tokio::test]
async fn audit_purge_keeps_the_chain_verifiable_and_tampering_is_found() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    json(&data, &["tenant", "create", "acme"]);
    for name in ["a.read", "b.read", "c.read"] {
        json(&data, &["scope", "create", name, "--description", "x"]);
    }
    let before = json(&data, &["audit", "verify"]);
    let head = before["head_seq"].as_i64().unwrap();
    assert!(head >= 4, "{before}");

    let (ok, _, err) = mandate(&data, &["audit", "purge", "--before", "soon"], None);
    assert!(!ok && err.contains("--before"), "{err}");
    // Everything is older than 2100: all but the newest event goes.
    let purge = json(
        &data,
        &["audit", "purge", "--before", "2100-01-01T00:00:00Z"],
    );
    assert_eq!(purge["to_seq"], head - 1, "{purge}");
    assert_eq!(purge["purged"], head - 1, "{purge}");
    let kid = purge["checkpoint"]["kid"].as_str().unwrap().to_owned();
    assert!(kid.starts_with("k_"), "{purge}");

    let report = json(&data, &["audit", "verify"]);
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["purged_through"], head - 1);
    assert_eq!(report["anchor"]["seq"], head - 1);
    assert_eq!(report["anchor"]["kid"], kid.as_str());
    assert_eq!(
        report["keys"], "kek",
        "checked against keys the KEK vouches for"
    );
    let (ok, text, _) = mandate(&data, &["audit", "verify"], None);
    assert!(
        ok && text.contains(&format!("from the checkpoint of event {}", head - 1))
            && text.contains(&kid),
        "{text}"
    );
    // Nothing older is left: purging again does nothing.
    let (ok, text, _) = mandate(&data, &["audit", "purge", "--before", "1d"], None);
    assert!(ok && text.contains("nothing to purge"), "{text}");

    // A checkpoint of the head, verifiable against the stored public key (what /jwks.json
    // publishes).
    let cp = json(&data, &["audit", "checkpoint"]);
    let jws = cp["jws"].as_str().unwrap();
    let url = format!("sqlite://{}", data.join("mandate.db").display());
    let store = mandate_store::connect(&url).await.unwrap();
    let keys = mandate_store::audit::stored_public_keys(store.as_ref())
        .await
        .unwrap();
    let (claims, signed_by) = mandate_core::audit_checkpoint::verify(jws, &keys).unwrap();
    assert_eq!(signed_by, kid);
    assert_eq!(claims.seq, cp["seq"].as_i64().unwrap());
    assert_eq!(claims.hash, cp["hash"].as_str().unwrap());
    drop(store);

    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE event_chain SET start_hash = ?")
        .bind("ab".repeat(32))
        .execute(&mut db)
        .await
        .unwrap();
    drop(db);
    let (_, err) = verify_finds_a_break(&data, "checkpoint_mismatch");
    assert!(err.contains("disagrees with the chain's start"), "{err}");
}

/// `mandate audit tail -f` through the admin API prints events as they are committed, and
/// `audit search` on the server's own database finds them while the server runs.
#[tokio::test]
async fn audit_tail_follows_new_events_and_search_filters_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, issuer) = common::serve(&data, &["--config", common::DEMO]);
    let http = reqwest::Client::new();
    let issue = async || {
        let status = http
            .post(format!("{issuer}/token"))
            .basic_auth("svc-agent", Some("demo-svc-agent-secret-0123456789abcdef"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success());
    };
    issue().await;
    let mut tail = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["--server", &issuer, "audit", "tail", "-f", "-n", "1"])
        .args(["--agent", "svc-agent", "--interval-ms", "100", "--json"])
        .env("MANDATE_CLIENT_ID", "admin-cli")
        .env(
            "MANDATE_CLIENT_SECRET",
            "demo-admin-cli-secret-0123456789abcdef",
        )
        .env_remove("MANDATE_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, followed) = std::sync::mpsc::channel();
    let out = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if seen.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // The latest matching event comes first: once it is printed, the follower knows where it
    // stands, and everything written from now on must follow it.
    let next = || {
        let line = followed
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("tail printed the event");
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let mut printed = vec![next()];
    for _ in 0..3 {
        issue().await;
    }
    while printed.len() < 4 {
        printed.push(next());
    }
    for e in &printed {
        assert_eq!(e["action"], "token.issued", "{e}");
        assert_eq!(e["client_id"], "svc-agent", "{e}");
    }
    let seqs: Vec<i64> = printed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(
        followed
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "nothing else matched the filter"
    );
    tail.kill().unwrap();
    tail.wait().unwrap();

    // The same events, searched in the server's database while it runs.
    let found = json(
        &data,
        &[
            "audit",
            "search",
            "--agent",
            "svc-agent",
            "--action",
            "token.issued",
        ],
    );
    let found_seqs: Vec<i64> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(found_seqs, seqs);
    let (ok, text, err) = mandate(
        &data,
        &["audit", "search", "--agent", "svc-agent", "--limit", "2"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("token.issued") && text.contains("agent=svc-agent"),
        "{text}"
    );
    assert!(
        err.contains(&format!("--after {}", seqs[1])),
        "tells how to page on: {err}"
    );
    let (ok, text, _) = mandate(&data, &["audit", "tail", "-n", "1"], None);
    assert!(ok && text.lines().count() == 1, "{text}");
    let (ok, _, err) = mandate(&data, &["audit", "search", "--since", "last tuesday"], None);
    assert!(!ok && err.contains("since must be"), "{err}");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// `mandate audit export` writes exactly the lines a server's file sink delivered for the same
/// events; `--after` and `--output` select and redirect them.
#[tokio::test]
async fn audit_export_writes_the_same_lines_as_the_file_sink() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    json(&data, &["tenant", "create", "acme"]);
    json(
        &data,
        &["scope", "create", "tickets.read", "--description", "Read"],
    );
    json(
        &data,
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tickets.read",
            "--expires-in",
            "1d",
            "--name",
            "sync",
        ],
    );
    let sink = dir.path().join("audit.jsonl");
    let config = dir.path().join("export.toml");
    std::fs::write(
        &config,
        format!(
            "[[audit_export]]\nname = \"siem\"\nkind = \"file\"\npath = \"{}\"\n\
             poll_interval_ms = 100\n",
            sink.display()
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    while !lines
        .next()
        .expect("serve exited early")
        .unwrap()
        .starts_with("Mandate is running")
    {}

    // The sink catches up with the events the CLI wrote; the export then prints the same.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let exported = loop {
        let (ok, out, err) = mandate(&data, &["audit", "export"], None);
        assert!(ok, "{err}");
        let delivered = std::fs::read_to_string(&sink).unwrap_or_default();
        if !out.is_empty() && out == delivered {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sink never matched the export:\n{delivered}\n---\n{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    server.kill().unwrap();
    server.wait().unwrap();

    let all: Vec<&str> = exported.lines().collect();
    assert!(all.len() >= 3, "{exported}");
    for (i, line) in all.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["metadata"]["sequence"], i as i64 + 1);
    }
    let out = dir.path().join("after-2.jsonl");
    let (ok, stdout, err) = mandate(
        &data,
        &[
            "audit",
            "export",
            "--after",
            "2",
            "--output",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok && stdout.is_empty(), "{err}");
    let tail = std::fs::read_to_string(&out).unwrap();
    assert_eq!(tail.lines().collect::<Vec<_>>(), all[2..].to_vec());
}

/// `mandate signing-key` on the local database: rotate, list, withdraw; the server started
/// afterwards signs with the rotated key and publishes only the keys that still verify.
#[tokio::test]
async fn signing_keys_are_rotated_listed_and_withdrawn_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = json(&data, &["signing-key", "list"]);
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 1, "the first key is created on first use");
    assert_eq!(first[0]["status"], "active");
    let old = first[0]["kid"].as_str().unwrap().to_owned();

    let pending = json(&data, &["signing-key", "rotate"]);
    assert_eq!(pending["status"], "pending", "{pending}");
    // A key never activates in the same (whole) second as the active one did.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let now = json(&data, &["signing-key", "rotate", "--activate-in", "0"]);
    assert_eq!(now["status"], "active", "{now}");
    let new = now["kid"].as_str().unwrap().to_owned();

    let pending_kid = pending["kid"].as_str().unwrap();
    let dropped = json(&data, &["signing-key", "withdraw", pending_kid]);
    assert_eq!(dropped["status"], "withdrawn");
    let (ok, _, err) = mandate(&data, &["signing-key", "withdraw", &new], None);
    assert!(!ok && err.contains("rotate first"), "{err}");
    let withdrawn = json(&data, &["signing-key", "withdraw", &old]);
    assert_eq!(withdrawn["status"], "withdrawn");
    let listed = json(&data, &["signing-key", "list"]);
    let status = |kid: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&old), "withdrawn");
    assert_eq!(status(&new), "active");
    assert_eq!(status(pending_kid), "withdrawn");
    let (ok, table, _) = mandate(&data, &["signing-key", "list"], None);
    assert!(
        ok && table.contains(&new) && table.contains("withdrawn"),
        "{table}"
    );

    // A server on this database signs with the rotated key and no longer publishes the old.
    let (mut server, issuer) = common::serve(&data, &[]);
    let jwks: Value = reqwest::get(format!("{issuer}/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&new.as_str()) && !kids.contains(&old.as_str()),
        "{kids:?}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
