//! The RFC 9728 protected resource metadata document and its well-known locations.

use crate::helpers::*;
use mandate_guard::Guard;
use serde_json::json;

#[tokio::test]
async fn metadata_document_is_served_without_a_token() {
    let fake = spawn_fake_issuer(None).await;
    fake.publish(&new_key("k"));
    let guard = Guard::builder(&fake.issuer, CRM)
        .scopes_supported(["tickets.read", "billing.read"])
        .build()
        .await
        .unwrap();
    assert_eq!(
        guard.metadata_url(),
        "http://127.0.0.1:8081/.well-known/oauth-protected-resource"
    );
    let app = spawn_protected(&guard).await;
    let (status, _, body) =
        get_with(&format!("{app}/.well-known/oauth-protected-resource"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "resource": CRM,
            "authorization_servers": [fake.issuer],
            "scopes_supported": ["tickets.read", "billing.read"],
            "bearer_methods_supported": ["header"],
        })
    );
}

#[tokio::test]
async fn resource_with_a_path_gets_the_path_inserted_location() {
    let fake = spawn_fake_issuer(None).await;
    fake.publish(&new_key("k"));
    let resource = "http://127.0.0.1:8081/crm/v1";
    let guard = Guard::builder(&fake.issuer, resource)
        .build()
        .await
        .unwrap();
    assert_eq!(
        guard.metadata_url(),
        "http://127.0.0.1:8081/.well-known/oauth-protected-resource/crm/v1"
    );
    let app = spawn_protected(&guard).await;
    for path in [
        "/.well-known/oauth-protected-resource/crm/v1",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, _, body) = get_with(&format!("{app}{path}"), &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["resource"], resource);
        assert!(
            body.get("scopes_supported").is_none(),
            "omitted when not configured"
        );
    }
    let (_, challenge, _) = get_with(&format!("{app}/tickets"), &[]).await;
    assert_eq!(
        challenge,
        "Bearer resource_metadata=\"http://127.0.0.1:8081/.well-known/oauth-protected-resource/crm/v1\""
    );
}
