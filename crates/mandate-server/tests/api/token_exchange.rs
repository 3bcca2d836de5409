//! RFC 8693 token exchange on behalf of a user: narrowing only, the same subject and tenant,
//! the chain in `act`, the policy, the depth limit, and revocation anywhere in the chain.

use crate::helpers::*;
use mandate_core::exchange::{ExchangePolicy, ExchangeRule};
use mandate_server::config::{AgentConfig, Config, Secret};
use mandate_store::EventFilter;
use reqwest::StatusCode;
use serde_json::Value;

crate::backend_tests!(
    an_agent_exchanges_a_users_token_for_a_narrower_one_with_the_chain_recorded,
    exchange_never_widens_and_obeys_the_policy,
    a_second_hop_nests_the_chain_up_to_the_depth_limit,
    revoking_the_users_grant_ends_every_exchanged_token,
    bad_exchange_requests_get_oauth_errors,
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const HOP_SECRET: &str = "second-hop-agent-secret-0123456789abcdef";

/// The demo plus a second confidential agent in acme, and rules letting `svc-agent` and
/// `hop-agent` exchange for the demo CRM.
fn with_exchange(max_depth: usize) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.agents.push(AgentConfig {
            client_id: "hop-agent".into(),
            name: Some("Second hop".into()),
            kind: "confidential".into(),
            secret: Some(Secret::new(HOP_SECRET)),
            secret_hash: None,
            redirect_uris: vec![],
            grant_types: vec!["client_credentials".into()],
            max_scopes: vec!["tickets.read".into()],
            tenant: Some("acme".into()),
            access_token_ttl_seconds: None,
            refresh_token_ttl_seconds: None,
            default_resource: Some(CRM.into()),
            allowed_resources: vec![],
        });
        c.exchange = ExchangePolicy {
            max_depth,
            rules: ["svc-agent", "hop-agent"]
                .into_iter()
                .map(|agent| ExchangeRule {
                    agent: agent.into(),
                    audiences: vec![CRM.into()],
                })
                .collect(),
            allow_service_subjects: false,
        };
    }
}

async fn exchange(
    app: &TestApp,
    agent: (&str, &str),
    subject: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut pairs = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS),
    ];
    pairs.extend_from_slice(extra);
    let (status, _, body) = app.post_form("/token", Some(agent), &pairs).await;
    (status, body)
}

const SVC: (&str, &str) = ("svc-agent", SVC_SECRET);
const HOP: (&str, &str) = ("hop-agent", HOP_SECRET);

async fn an_agent_exchanges_a_users_token_for_a_narrower_one_with_the_chain_recorded(
    backend: Backend,
) {
    let app = spawn_with(backend, with_exchange(3)).await;
    let alice = user_tokens(&app, "alice", "contacts.read tickets.read tickets.write").await;
    let user = app.verify(s(&alice["access_token"])).await;

    let (status, body) = exchange(
        &app,
        SVC,
        s(&alice["access_token"]),
        &[("scope", "tickets.read"), ("resource", CRM)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "tickets.read");
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token from an exchange"
    );

    let claims = app.verify(s(&body["access_token"])).await;
    assert_eq!(claims.sub, user.sub, "the subject never changes");
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.client_id, "svc-agent");
    assert_eq!(claims.gid, user.gid, "revocable through the user's grant");
    assert_eq!(claims.scope.to_string(), "tickets.read");
    assert!(claims.exp <= user.exp, "never outlives the subject token");
    let act = claims.act.expect("act claim");
    assert_eq!(act["sub"], "svc-agent");
    assert!(act.get("act").is_none(), "one hop");

    let introspected = app.introspect(s(&body["access_token"])).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["act"]["sub"], "svc-agent");

    let events = app
        .store
        .events(&EventFilter {
            actions: vec!["token.exchanged".into()],
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.event.client_id.as_deref(), Some("svc-agent"));
    assert_eq!(e.event.user_id.as_deref(), Some(user.sub.as_str()));
    assert_eq!(e.event.detail["act"]["sub"], "svc-agent");
    assert_eq!(e.event.detail["subject_client_id"], "cli-agent");
    let recorded = serde_json::to_string(&e.event).unwrap();
    assert!(
        !recorded.contains(s(&alice["access_token"])),
        "no token in the audit record"
    );
}

async fn exchange_never_widens_and_obeys_the_policy(backend: Backend) {
    let app = spawn_with(backend, with_exchange(3)).await;
    let alice = user_tokens(&app, "alice", "contacts.read tickets.read").await;
    let token = s(&alice["access_token"]);
    for (scope, why) in [
        ("tickets.write", "beyond what alice granted"),
        ("contacts.read", "beyond svc-agent's maximum"),
        ("tickets.read contacts.read", "partly beyond"),
    ] {
        let (status, body) = exchange(&app, SVC, token, &[("scope", scope)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"], "invalid_scope", "{why}");
    }
    // Without a scope, the result is what both allow: never more.
    let (status, body) = exchange(&app, SVC, token, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "tickets.read");

    // No rule lets svc-agent exchange for another audience; carol is in another tenant.
    let (status, body) = exchange(
        &app,
        SVC,
        token,
        &[("resource", "http://elsewhere.example")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target", "{body}");
    let carol = user_tokens(&app, "carol", "tickets.read").await;
    let (status, body) = exchange(&app, SVC, s(&carol["access_token"]), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A service's own token is not a user's: no exchange on behalf of a service by default.
    let svc = app.client_credentials(Some("tickets.read")).await;
    let (status, body) = exchange(&app, HOP, s(&svc["access_token"]), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // An agent without a rule (the public cli-agent) may not exchange at all.
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", EXCHANGE),
                ("client_id", "cli-agent"),
                ("subject_token", token),
                ("subject_token_type", ACCESS),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_target", "{body}");
}

async fn a_second_hop_nests_the_chain_up_to_the_depth_limit(backend: Backend) {
    let app = spawn_with(backend, with_exchange(2)).await;
    let alice = user_tokens(&app, "alice", "tickets.read tickets.write").await;
    let (_, first) = exchange(&app, SVC, s(&alice["access_token"]), &[]).await;
    assert_eq!(first["scope"], "tickets.read tickets.write");
    let (status, second) = exchange(&app, HOP, s(&first["access_token"]), &[]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        second["scope"], "tickets.read",
        "narrowed to hop-agent's maximum"
    );
    let claims = app.verify(s(&second["access_token"])).await;
    let act = claims.act.unwrap();
    assert_eq!(act["sub"], "hop-agent", "the current actor is outermost");
    assert_eq!(act["act"]["sub"], "svc-agent", "prior actors nest inside");

    // A third hop would exceed max_depth = 2.
    let (status, third) = exchange(&app, SVC, s(&second["access_token"]), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{third}");
    assert_eq!(third["error"], "invalid_request");
    assert!(s(&third["error_description"]).contains("chain"), "{third}");
}

async fn revoking_the_users_grant_ends_every_exchanged_token(backend: Backend) {
    let app = spawn_with(backend, with_exchange(3)).await;
    let alice = user_tokens(&app, "alice", "tickets.read").await;
    let (_, first) = exchange(&app, SVC, s(&alice["access_token"]), &[]).await;
    let (_, second) = exchange(&app, HOP, s(&first["access_token"]), &[]).await;
    assert_eq!(
        app.introspect(s(&second["access_token"])).await["active"],
        true
    );

    // alice's agent revokes her grant through its refresh token.
    let (status, _, _) = app
        .post_form(
            "/revoke",
            None,
            &[
                ("client_id", "cli-agent"),
                ("token", s(&alice["refresh_token"])),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for token in [&first, &second] {
        assert_eq!(
            app.introspect(s(&token["access_token"])).await["active"],
            false
        );
    }
    let (status, body) = exchange(&app, SVC, s(&alice["access_token"]), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

async fn bad_exchange_requests_get_oauth_errors(backend: Backend) {
    let app = spawn_with(backend, with_exchange(3)).await;
    let alice = user_tokens(&app, "alice", "tickets.read").await;
    let token = s(&alice["access_token"]);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("grant_type", EXCHANGE)], "invalid_request"),
        (
            vec![("grant_type", EXCHANGE), ("subject_token", token)],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", "not.a.jwt"),
                ("subject_token_type", ACCESS),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", token),
                ("subject_token_type", ACCESS),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", token),
                ("subject_token_type", ACCESS),
                ("actor_token", "garbage"),
                ("actor_token_type", ACCESS),
            ],
            "invalid_grant",
        ),
    ];
    for (pairs, want) in cases {
        let (status, _, body) = app.post_form("/token", Some(SVC), &pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pairs:?}: {body}");
        assert_eq!(body["error"], want, "{pairs:?}: {body}");
    }
    // Unauthenticated: 401 invalid_client, as for every grant.
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("svc-agent", "wrong-secret-wrong-secret-wrong-secret")),
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", token),
                ("subject_token_type", ACCESS),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
