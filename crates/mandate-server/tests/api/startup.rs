use crate::helpers::*;
use mandate_server::config::{self, Overrides};
use mandate_server::{Application, Config};
use reqwest::StatusCode;

crate::backend_tests!(
    restart_keeps_keys_and_applies_config_idempotently,
    invalid_configuration_names_the_key,
    malformed_requests_never_get_a_5xx,
    the_event_table_is_append_only,
);

/// `mandate serve` with nothing configured: SQLite under the data directory, a 0600 KEK file.
#[tokio::test]
async fn zero_configuration_start_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("mandate-data"),
        ..Config::default()
    };
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    assert_eq!(app.issuer(), base);
    assert_eq!(app.backend(), "sqlite");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let doc: serde_json::Value = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], base.as_str());
    assert!(dir.path().join("mandate-data/mandate.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("mandate-data/kek"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

async fn restart_keeps_keys_and_applies_config_idempotently(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.client_credentials(None).await;
    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let jwks_before: serde_json::Value = app.get_json("/jwks.json").await;

    // A second node (or a restart) on the same database and data directory, same issuer.
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        issuer: Some(app.issuer.clone()),
        data_dir: Some(app.data_dir.clone()),
        database_url: Some(app.database_url.clone()),
    };
    let config = config::load(Some(&demo_toml()), &overrides).unwrap();
    let configured_agents = config.agents.len();
    let configured_users = config.users.len();
    let configured_roles = config.admin_roles.len();
    let second = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", second.port());
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(second.run_until(async {
        let _ = rx.await;
    }));
    let jwks_after: serde_json::Value = app
        .http
        .get(format!("{base}/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_before, jwks_after, "the same signing key is used");
    assert_eq!(
        app.store.user_by_login("alice").await.unwrap().unwrap(),
        alice,
        "users are not re-created or re-hashed"
    );
    assert_eq!(
        app.store.users(None, None, 1000).await.unwrap().len(),
        configured_users
    );
    assert_eq!(
        app.store.agents(None, None, 1000).await.unwrap().len(),
        configured_agents
    );
    let role_grants = app
        .store
        .events(&mandate_store::EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == mandate_core::event::Action::AdminRoleGranted)
        .count();
    assert_eq!(
        role_grants, configured_roles,
        "admin roles are granted once, not at every start"
    );
    // The second node accepts the first node's token at introspection.
    let resp: serde_json::Value = app
        .http
        .post(format!("{base}/introspect"))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .form(&[("token", s(&token["access_token"]))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["active"], true);
}

async fn invalid_configuration_names_the_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: Vec<(&str, &str)> = vec![
        (
            "[[agents]]\nclient_id = \"x\"\nkind = \"public\"\ngrant_types = [\"authorization_code\"]\nmax_scopes = [\"nope.read\"]\nredirect_uris = [\"http://127.0.0.1/cb\"]\n",
            "agents[0].max_scopes",
        ),
        (
            "[[agents]]\nclient_id = \"x\"\nkind = \"public\"\ngrant_types = [\"password\"]\nmax_scopes = []\n",
            "agents[0].grant_types",
        ),
        (
            "[[agents]]\nclient_id = \"x\"\nkind = \"public\"\ngrant_types = [\"authorization_code\"]\nmax_scopes = []\nredirect_uris = [\"http://evil.example/cb\"]\n",
            "agents[0].redirect_uris",
        ),
        (
            "[[agents]]\nclient_id = \"x\"\nkind = \"confidential\"\nsecret = \"short\"\ngrant_types = [\"client_credentials\"]\nmax_scopes = []\ntenant = \"acme\"\n",
            "agents[0].secret",
        ),
        (
            "[[users]]\nlogin = \"dave\"\ntenant = \"initech\"\npassword = \"dave-password\"\n",
            "users[0].tenant",
        ),
        (
            "[[tenants]]\nid = \"Bad Tenant\"\nname = \"x\"\n",
            "tenants[0].id",
        ),
        (
            "[[resources]]\nidentifier = \"not a uri\"\nname = \"x\"\nscopes = []\n",
            "resources[0].identifier",
        ),
        (
            "[[tenants]]\nid = \"t\"\nname = \"x\"\ncolour = \"red\"\n",
            "colour",
        ),
        (
            "[[anomaly.rules]]\nname = \"r1\"\nkind = \"spikes\"\n",
            "anomaly rule `r1`: unknown kind `spikes`",
        ),
        (
            "[[anomaly.rules]]\nname = \"r2\"\nkind = \"client_auth_failures\"\nper = \"address\"\nactions = [\"revoke\"]\n",
            "anomaly rule `r2`: an address cannot be revoked",
        ),
        (
            "[[anomaly.rules]]\nname = \"r3\"\nkind = \"out_of_scope\"\nactions = [\"webhook\"]\n",
            "[anomaly.webhook] is not configured",
        ),
        (
            "[[anomaly.rules]]\nname = \"r4\"\nkind = \"refresh_reuse\"\ntreshold = 3\n",
            "treshold",
        ),
    ];
    for (toml, key) in cases {
        let file = app.data_dir.join("bad.toml");
        std::fs::write(&file, toml).unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(app.data_dir.clone()),
            database_url: Some(app.database_url.clone()),
            ..Overrides::default()
        };
        let message = match config::load(Some(&file), &overrides) {
            Err(e) => e.to_string(),
            Ok(c) => match Application::build(c).await {
                Err(e) => format!("{e:#}"),
                Ok(_) => panic!("{key}: accepted"),
            },
        };
        assert!(message.contains(key), "{key} not named in: {message}");
    }
}

async fn malformed_requests_never_get_a_5xx(backend: Backend) {
    let app = spawn_app(backend).await;
    let junk: Vec<(&str, &str, String)> = vec![
        ("GET", "/authorize", "?".into()),
        ("GET", "/authorize", "?client_id=%FF%FE".into()),
        (
            "GET",
            "/authorize",
            format!("?client_id=cli-agent&{}", "x=1&".repeat(200)),
        ),
        (
            "GET",
            "/authorize",
            format!("?client_id={}", "a".repeat(5000)),
        ),
        ("POST", "/login", "".into()),
        ("POST", "/login", "request_id=x&csrf=y".into()),
        ("POST", "/consent", "request_id=x&request_id=y".into()),
        (
            "POST",
            "/token",
            "grant_type=refresh_token&refresh_token=%00%01".into(),
        ),
        (
            "POST",
            "/token",
            format!(
                "grant_type=authorization_code&code={}&code_verifier={}",
                "c".repeat(600),
                "v".repeat(43)
            ),
        ),
        ("POST", "/introspect", "token=".into()),
        ("POST", "/revoke", "\u{0}\u{1}".into()),
        ("GET", "/token", "".into()),
        ("GET", "/nowhere", "".into()),
    ];
    for (method, path, rest) in junk {
        let req = match method {
            "GET" => app.http.get(format!("{}{}", app.url(path), rest)),
            _ => app
                .http
                .post(app.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .basic_auth("svc-agent", Some(SVC_SECRET))
                .body(rest.clone()),
        };
        let status = req.send().await.unwrap().status();
        assert!(status.is_client_error(), "{method} {path}: {status}");
    }
}

async fn the_event_table_is_append_only(backend: Backend) {
    let app = spawn_app(backend).await;
    app.client_credentials(None).await;
    let statements = ["UPDATE events SET reason = 'edited'", "DELETE FROM events"];
    for sql in statements {
        let result = match backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.map(|_| ())
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.map(|_| ())
            }
        };
        let err = result.expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let events = app
        .store
        .events(&mandate_store::EventFilter::default())
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.event.reason.as_deref() != Some("edited"))
    );
    assert!(
        events
            .iter()
            .any(|e| e.event.action.as_str() == "token.issued")
    );
}
