use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use std::time::{Duration, Instant};

crate::backend_tests!(
    feed_is_for_resource_servers_only,
    feed_delivers_revocations_and_resumes_after_the_last_event_id,
    resource_servers_introspect_their_audience_in_every_tenant,
    shutdown_ends_open_feeds_instead_of_waiting_on_them,
    bulk_revocations_take_effect_at_once_and_touch_nobody_else,
);

const CRM_ID: &str = "demo-crm";
const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";

pub(crate) async fn open_feed(app: &TestApp, last_event_id: Option<i64>) -> reqwest::Response {
    let mut req = app
        .http
        .get(app.url("/revocations"))
        .basic_auth(CRM_ID, Some(CRM_SECRET));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    resp
}

/// Reads server-sent events until `n` revocation entries arrived; fails after `within`.
pub(crate) async fn entries(
    resp: &mut reqwest::Response,
    buffer: &mut String,
    n: usize,
    within: Duration,
) -> Vec<(i64, Value)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str::<Value>(v.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                assert_eq!(data["seq"], id, "the SSE id is the entry's sequence number");
                out.push((id, data));
            }
        }
        if out.len() >= n {
            return out;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {n} revocations within {within:?}: {out:?}",
                    out.len()
                )
            })
            .unwrap()
            .expect("feed closed");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

async fn feed_is_for_resource_servers_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (None, StatusCode::UNAUTHORIZED, "no credential"),
        (
            Some(("svc-agent", SVC_SECRET)),
            StatusCode::UNAUTHORIZED,
            "an agent",
        ),
        (
            Some((CRM_ID, "wrong-secret-wrong-secret-wrong-secret")),
            StatusCode::UNAUTHORIZED,
            "wrong secret",
        ),
    ];
    for (creds, status, reason) in cases {
        let mut req = app.http.get(app.url("/revocations"));
        if let Some((id, secret)) = creds {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{reason}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{reason}");
    }
    let bad = app
        .http
        .get(app.url("/revocations"))
        .basic_auth(CRM_ID, Some(CRM_SECRET))
        .header("last-event-id", "not-a-number")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    // A resource credential is not an OAuth client: no tokens for it.
    let (status, _, body) = app
        .post_form(
            "/token",
            Some((CRM_ID, CRM_SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

async fn feed_delivers_revocations_and_resumes_after_the_last_event_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = user_tokens(&app, "alice", "contacts.read").await;
    let gid = app.verify(s(&alice["access_token"])).await.gid;
    let svc = app.client_credentials(None).await;
    let svc_claims = app.verify(s(&svc["access_token"])).await;

    let mut feed = open_feed(&app, None).await;
    let mut buf = String::new();
    let started = Instant::now();
    let (_, _, _) = app
        .post_form(
            "/revoke",
            None,
            &[
                ("token", s(&alice["refresh_token"])),
                ("client_id", "cli-agent"),
            ],
        )
        .await;
    let got = entries(&mut feed, &mut buf, 1, Duration::from_secs(5)).await;
    let latency = started.elapsed();
    assert_eq!(got[0].1["kind"], "grant");
    assert_eq!(got[0].1["grant_id"], gid.as_str());
    assert_eq!(got[0].1["tenant"], "acme");
    assert!(
        latency < Duration::from_secs(1),
        "revocation reached the feed in {latency:?}"
    );

    app.post_form(
        "/revoke",
        Some(("svc-agent", SVC_SECRET)),
        &[("token", s(&svc["access_token"]))],
    )
    .await;
    let got = entries(&mut feed, &mut buf, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].1["kind"], "token");
    assert_eq!(got[0].1["jti"], svc_claims.jti.as_str());
    assert_eq!(got[0].1["expires_at"], svc_claims.exp);
    let token_seq = got[0].0;

    // A revocation written by another process (the CLI) arrives by polling.
    let bob = app.store.user_by_login("bob").await.unwrap().unwrap();
    let mut disabled = mandate_core::event::NewEvent::new(
        app.now(),
        mandate_core::event::Action::UserDisabled,
        mandate_core::event::ActorKind::Admin,
    );
    disabled.user_id = Some(bob.id.clone());
    let other = mandate_store::connect(&app.database_url).await.unwrap();
    other.append_events(&[disabled]).await.unwrap();
    let got = entries(&mut feed, &mut buf, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].1["kind"], "user");
    assert_eq!(got[0].1["user_id"], bob.id.as_str());
    drop(feed);

    // Reconnecting after the token revocation replays only what came later.
    let mut resumed = open_feed(&app, Some(token_seq)).await;
    let mut buf = String::new();
    let got = entries(&mut resumed, &mut buf, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].1["kind"], "user", "{got:?}");
    // From the start, everything is replayed in order.
    let mut replay = open_feed(&app, Some(0)).await;
    let mut buf = String::new();
    let kinds: Vec<Value> = entries(&mut replay, &mut buf, 3, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|(_, v)| v["kind"].clone())
        .collect();
    assert_eq!(kinds, ["grant", "token", "user"]);
}

async fn resource_servers_introspect_their_audience_in_every_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let carol = user_tokens(&app, "carol", "contacts.read").await;
    let (status, _, body) = app
        .post_form(
            "/introspect",
            Some((CRM_ID, CRM_SECRET)),
            &[("token", s(&carol["access_token"]))],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true, "the CRM serves every tenant: {body}");
    assert_eq!(body["tenant"], "globex");
    assert_eq!(body["aud"], CRM);
    let (status, _, body) = app
        .post_form(
            "/introspect",
            Some((CRM_ID, "wrong-secret-wrong-secret-wrong-secret")),
            &[("token", s(&carol["access_token"]))],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

async fn shutdown_ends_open_feeds_instead_of_waiting_on_them(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut feed = open_feed(&app, None).await;
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("graceful shutdown waited on an open revocation feed");
    // The stream itself has ended (a guard reconnects, to another node if there is one).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = feed.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the feed stream stayed open after shutdown");
}

/// With several writers on PostgreSQL, sequence numbers are taken under the audit chain's head
/// lock, so a lower number can never commit after a higher one has been delivered: a second
/// writer waits for the first to commit, and the feed delivers both in order.
#[tokio::test]
async fn postgres_writers_commit_in_sequence_order_and_the_feed_delivers_in_order() {
    if mandate_store::testing::postgres_test_url().is_none() {
        eprintln!("SKIPPED: MANDATE_TEST_POSTGRES_URL is not set");
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let mut feed = open_feed(&app, None).await;
    let mut buffer = String::new();
    let token = app.client_credentials(Some("tickets.read")).await;

    // Another writer (another node, say) chains a revocation and holds its transaction open.
    let mut slow = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    let held: i64 =
        sqlx::query_scalar("UPDATE event_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut slow)
            .await
            .unwrap();
    let head_hash: String = sqlx::query_scalar("SELECT hash FROM events WHERE seq = $1")
        .bind(held - 1)
        .fetch_one(&mut slow)
        .await
        .unwrap();
    let fields = mandate_core::audit::ChainedFields {
        seq: held,
        at: 0,
        action: "grant.revoked",
        actor_kind: "admin",
        actor_id: None,
        tenant_id: None,
        user_id: None,
        client_id: None,
        grant_id: Some("g_late"),
        scopes: None,
        reason: None,
        ip: None,
        user_agent: None,
        detail: "{}",
    };
    let hash = mandate_core::audit::link(&head_hash, &fields);
    sqlx::query(
        "INSERT INTO events (seq, at, action, actor_kind, grant_id, detail, hash)
         VALUES ($1, 0, 'grant.revoked', 'admin', 'g_late', '{}', $2)",
    )
    .bind(held)
    .bind(&hash)
    .execute(&mut slow)
    .await
    .unwrap();

    // This node's revocation has to wait for the chain's head.
    let revoke = {
        let http = app.http.clone();
        let url = app.url("/revoke");
        let access = s(&token["access_token"]).to_owned();
        tokio::spawn(async move {
            http.post(url)
                .basic_auth("svc-agent", Some(SVC_SECRET))
                .form(&[("token", access)])
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!revoke.is_finished(), "a second writer waits for the head");

    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    assert_eq!(revoke.await.unwrap(), StatusCode::OK);
    let delivered = entries(&mut feed, &mut buffer, 2, Duration::from_secs(5)).await;
    assert_eq!(delivered[0].0, held, "the first committed comes first");
    assert_eq!(delivered[0].1["grant_id"], "g_late");
    assert!(delivered[1].0 > held);
    let chain = mandate_store::audit::verify(app.store.as_ref(), &[], |_, _| {})
        .await
        .unwrap();
    assert_eq!(chain.broken, None);
}

async fn bulk_revocations_take_effect_at_once_and_touch_nobody_else(backend: Backend) {
    use mandate_core::event::{Action, ActorKind, NewEvent};
    use mandate_store::BulkTarget;
    let app = spawn_app(backend).await;
    let alice = user_tokens(&app, "alice", "contacts.read").await;
    let bob = user_tokens(&app, "bob", "contacts.read").await;
    let carol = user_tokens(&app, "carol", "contacts.read").await;
    let svc = app.client_credentials(Some("tickets.read")).await;
    let active = |token: &Value| {
        let token = s(&token["access_token"]).to_owned();
        let app = &app;
        async move {
            // As the CRM (a resource may introspect its audience in every tenant).
            let (_, _, body) = app
                .post_form(
                    "/introspect",
                    Some((CRM_ID, CRM_SECRET)),
                    &[("token", &token)],
                )
                .await;
            body["active"] == true
        }
    };
    let mut feed = open_feed(&app, None).await;
    let mut buffer = String::new();
    let event = || NewEvent::new(app.now(), Action::GrantRevoked, ActorKind::Admin);

    // Offboarding alice: only alice.
    let alice_id = app.verify(s(&alice["access_token"])).await.sub;
    let done = app
        .store
        .revoke_in_bulk(
            &BulkTarget::User {
                user_id: alice_id.clone(),
            },
            "offboarded",
            event(),
        )
        .await
        .unwrap();
    assert_eq!(done.grants, 1);
    assert!(!active(&alice).await);
    assert!(active(&bob).await && active(&carol).await && active(&svc).await);
    let got = entries(&mut feed, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].1["kind"], "user");
    assert_eq!(got[0].1["user_id"], alice_id.as_str());

    // svc-agent within acme: not bob's grant with cli-agent, not globex.
    app.store
        .revoke_in_bulk(
            &BulkTarget::AgentInTenant {
                client_id: "svc-agent".into(),
                tenant_id: "acme".into(),
            },
            "compromised",
            event(),
        )
        .await
        .unwrap();
    assert!(!active(&svc).await);
    assert!(active(&bob).await && active(&carol).await);
    let got = entries(&mut feed, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].1["kind"], "agent_in_tenant");

    // The globex integration is disabled: carol only.
    app.store
        .revoke_in_bulk(
            &BulkTarget::Tenant {
                tenant_id: "globex".into(),
            },
            "disabled",
            event(),
        )
        .await
        .unwrap();
    assert!(!active(&carol).await);
    assert!(active(&bob).await);
    let got = entries(&mut feed, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].1["kind"], "tenant");
    assert_eq!(got[0].1["tenant_id"], "globex");

    // Revocation is not a ban: alice may consent again and her new token works.
    let again = user_tokens(&app, "alice", "contacts.read").await;
    assert!(active(&again).await);
}
