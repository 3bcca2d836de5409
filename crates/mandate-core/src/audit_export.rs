//! The audit export format: one JSON object per stored event, one per line (JSON Lines), for
//! SIEMs. Field names follow OCSF 1.3 (the Open Cybersecurity Schema Framework) where OCSF has
//! a field for the value; everything Mandate-specific, and every raw stored column needed to
//! re-check the audit chain, sits under `unmapped`. `docs/audit-export.md` documents every
//! field and the action → OCSF class table below; [`ocsf_class`] is that table.
//!
//! The line is built from the stored row ([`ChainedFields`] and its chain hash), not from a
//! parsed [`crate::event::Event`], so export shows exactly what the chain covers, and a SIEM
//! holding consecutive lines can recompute each hash ([`crate::audit::link`]) from the
//! previous line's `unmapped.hash`.
//!
//! Absent values are left out (no `null`s); an empty string that was stored stays an empty
//! string, as the chain keeps the two apart.

use crate::audit::ChainedFields;
use crate::event::Action;
use serde_json::{Map, Value, json};

/// The OCSF schema version the lines follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";
/// `metadata.product.name`.
pub const PRODUCT: &str = "Mandate";
/// `metadata.product.version`: the version of the server that wrote the line.
pub const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The media type of a body of lines.
pub const MEDIA_TYPE: &str = "application/x-ndjson";

/// OCSF categories used.
const IAM: (u32, &str) = (3, "Identity & Access Management");

/// An OCSF event class and activity for one Mandate action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcsfClass {
    pub class_uid: u32,
    pub class_name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
    pub activity_id: u32,
    pub activity_name: &'static str,
    /// `Success` or `Failure` for the whole action.
    pub success: bool,
    /// OCSF `severity_id`: 1 Informational, 2 Low, 3 Medium, 4 High.
    pub severity_id: u32,
}

const fn class(
    class_uid: u32,
    class_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    success: bool,
    severity_id: u32,
) -> OcsfClass {
    OcsfClass {
        class_uid,
        class_name,
        category_uid: IAM.0,
        category_name: IAM.1,
        activity_id,
        activity_name,
        success,
        severity_id,
    }
}

// OCSF 1.3 classes of the Identity & Access Management category.
const ACCOUNT_CHANGE: (u32, &str) = (3001, "Account Change");
const AUTHENTICATION: (u32, &str) = (3002, "Authentication");
const AUTHORIZE_SESSION: (u32, &str) = (3003, "Authorize Session");
const ENTITY_MANAGEMENT: (u32, &str) = (3004, "Entity Management");
const USER_ACCESS: (u32, &str) = (3005, "User Access Management");

/// The OCSF class, activity, status and severity of each action (the table in
/// `docs/audit-export.md`). Exhaustive, so a new action must be classified here.
pub fn ocsf_class(action: Action) -> OcsfClass {
    use Action::*;
    let (auth, session, user_access, entity, account) = (
        AUTHENTICATION,
        AUTHORIZE_SESSION,
        USER_ACCESS,
        ENTITY_MANAGEMENT,
        ACCOUNT_CHANGE,
    );
    match action {
        LoginSucceeded => class(auth.0, auth.1, 1, "Logon", true, 1),
        LoginFailed => class(auth.0, auth.1, 1, "Logon", false, 2),
        ClientAuthFailed => class(auth.0, auth.1, 1, "Logon", false, 2),
        ApiKeyUsed => class(auth.0, auth.1, 1, "Logon", true, 1),
        RefreshReuseDetected => class(auth.0, auth.1, 99, "Refresh Token Reuse", false, 4),
        CodeReplayDetected => class(auth.0, auth.1, 99, "Authorization Code Replay", false, 4),
        TokenIssued | TokenRefreshed | TokenExchanged => {
            class(session.0, session.1, 1, "Assign Privileges", true, 1)
        }
        ConsentGranted => class(
            user_access.0,
            user_access.1,
            1,
            "Assign Privileges",
            true,
            1,
        ),
        ConsentDenied => class(
            user_access.0,
            user_access.1,
            1,
            "Assign Privileges",
            false,
            1,
        ),
        // Grants created by an operator in bulk, not consented one by one: worth a look.
        GrantsBulkLoaded => class(
            user_access.0,
            user_access.1,
            1,
            "Assign Privileges",
            true,
            2,
        ),
        AdminRoleGranted => class(
            user_access.0,
            user_access.1,
            1,
            "Assign Privileges",
            true,
            1,
        ),
        TokenRevoked | GrantRevoked | ApiKeyRevoked | AdminRoleRemoved => class(
            user_access.0,
            user_access.1,
            2,
            "Revoke Privileges",
            true,
            1,
        ),
        UserGrantsRevoked | TenantGrantsRevoked | AgentGrantsRevoked | AgentTenantGrantsRevoked => {
            class(
                user_access.0,
                user_access.1,
                2,
                "Revoke Privileges",
                true,
                3,
            )
        }
        UserDisabled | AgentDisabled => class(account.0, account.1, 5, "Disable", true, 1),
        ApiKeyCreated | ClientRegistered => class(entity.0, entity.1, 1, "Create", true, 1),
        ApiKeyRotated | ClientUpdated | ConfigApplied => {
            class(entity.0, entity.1, 3, "Update", true, 1)
        }
        ClientDeleted => class(entity.0, entity.1, 4, "Delete", true, 1),
        // The audit log itself is an entity: a checkpoint is created, old events are deleted.
        AuditCheckpoint => class(entity.0, entity.1, 1, "Create", true, 1),
        AuditPurged => class(entity.0, entity.1, 4, "Delete", true, 2),
        // Signing keys are entities too; withdrawing one is as serious as a purge.
        SigningKeyCreated => class(entity.0, entity.1, 1, "Create", true, 1),
        SigningKeyRetired => class(entity.0, entity.1, 4, "Delete", true, 2),
        // A resource server refused a call: OCSF's API Activity (category 6, Application
        // Activity); the HTTP method and path are in `unmapped.detail`.
        AccessDenied => OcsfClass {
            category_uid: 6,
            category_name: "Application Activity",
            ..class(6003, "API Activity", 99, "Other", false, 2)
        },
        // An anomaly rule fired: OCSF's Detection Finding (category 2, Findings), High.
        AnomalyDetected => OcsfClass {
            category_uid: 2,
            category_name: "Findings",
            ..class(2004, "Detection Finding", 1, "Create", true, 4)
        },
    }
}

/// A stored action name no [`Action`] has (not written by this version): OCSF's Base Event.
const UNKNOWN: OcsfClass = OcsfClass {
    class_uid: 0,
    class_name: "Base Event",
    category_uid: 0,
    category_name: "Uncategorized",
    activity_id: 99,
    activity_name: "Other",
    success: true,
    severity_id: 0,
};

fn severity_name(id: u32) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        _ => "Unknown",
    }
}

/// OCSF `user.type_id` / `user.type` for the actor kind.
fn actor_type(kind: &str) -> (u32, &'static str) {
    match kind {
        "user" => (1, "User"),
        "admin" => (2, "Admin"),
        "system" => (3, "System"),
        _ => (99, "Agent"),
    }
}

/// The export object for one stored event. `hash` is its stored chain hash (absent for events
/// written before the chain existed).
pub fn record(e: &ChainedFields<'_>, hash: Option<&str>) -> Value {
    let action = Action::parse(e.action);
    let c = action.map_or(UNKNOWN, ocsf_class);
    let mut out = Map::new();
    out.insert("time".into(), json!(e.at.saturating_mul(1000)));
    let mut metadata = json!({
        "uid": e.seq.to_string(),
        "sequence": e.seq,
        "version": OCSF_VERSION,
        "log_name": "audit",
        "product": { "name": PRODUCT, "vendor_name": PRODUCT, "version": PRODUCT_VERSION },
    });
    if let (Some(tenant), Value::Object(m)) = (e.tenant_id, &mut metadata) {
        m.insert("tenant_uid".into(), json!(tenant));
    }
    out.insert("metadata".into(), metadata);
    out.insert("class_uid".into(), json!(c.class_uid));
    out.insert("class_name".into(), json!(c.class_name));
    out.insert("category_uid".into(), json!(c.category_uid));
    out.insert("category_name".into(), json!(c.category_name));
    out.insert("activity_id".into(), json!(c.activity_id));
    out.insert("activity_name".into(), json!(c.activity_name));
    out.insert(
        "type_uid".into(),
        json!(u64::from(c.class_uid) * 100 + u64::from(c.activity_id)),
    );
    out.insert(
        "type_name".into(),
        json!(format!("{}: {}", c.class_name, c.activity_name)),
    );
    let (status_id, status) = if c.success {
        (1, "Success")
    } else {
        (2, "Failure")
    };
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status));
    if let Some(reason) = e.reason {
        out.insert("status_detail".into(), json!(reason));
    }
    out.insert("severity_id".into(), json!(c.severity_id));
    out.insert("severity".into(), json!(severity_name(c.severity_id)));
    out.insert("message".into(), json!(e.action));

    let mut actor = Map::new();
    if let Some(id) = e.actor_id {
        let (type_id, type_name) = actor_type(e.actor_kind);
        actor.insert(
            "user".into(),
            json!({ "uid": id, "type_id": type_id, "type": type_name }),
        );
    }
    if let Some(client) = e.client_id {
        actor.insert("app_uid".into(), json!(client));
        actor.insert("app_name".into(), json!(client));
    }
    if !actor.is_empty() {
        out.insert("actor".into(), Value::Object(actor));
    }
    if let Some(user) = e.user_id {
        out.insert("user".into(), json!({ "uid": user }));
    }
    if let Some(ip) = e.ip {
        out.insert("src_endpoint".into(), json!({ "ip": ip }));
    }
    if let Some(ua) = e.user_agent {
        out.insert("http_request".into(), json!({ "user_agent": ua }));
    }
    let privileges_apply = matches!(c.class_uid, 3003 | 3005);
    if let (Some(scopes), true) = (e.scopes, privileges_apply) {
        let list: Vec<&str> = scopes.split_whitespace().collect();
        out.insert("privileges".into(), json!(list));
    }

    // Every stored column, raw, so the chain can be re-checked from the lines alone.
    let mut unmapped = Map::new();
    unmapped.insert("action".into(), json!(e.action));
    unmapped.insert("actor_kind".into(), json!(e.actor_kind));
    let optional = [
        ("actor_id", e.actor_id),
        ("tenant_id", e.tenant_id),
        ("user_id", e.user_id),
        ("client_id", e.client_id),
        ("grant_id", e.grant_id),
        ("scopes", e.scopes),
        ("reason", e.reason),
        ("ip", e.ip),
        ("user_agent", e.user_agent),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            unmapped.insert(key.into(), json!(v));
        }
    }
    // The stored text is compact JSON, so it parses back to what re-serializes to it; a detail
    // that is not JSON at all (never written by Mandate) is passed on as a string.
    let detail = serde_json::from_str::<Value>(e.detail).unwrap_or_else(|_| json!(e.detail));
    unmapped.insert("detail".into(), detail);
    if let Some(h) = hash {
        unmapped.insert("hash".into(), json!(h));
    }
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// One line of the export: [`record`] as compact JSON and a newline.
pub fn line(e: &ChainedFields<'_>, hash: Option<&str>) -> String {
    let mut s = record(e, hash).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> ChainedFields<'static> {
        ChainedFields {
            seq: 42,
            at: 1_700_000_000,
            action: "token.issued",
            actor_kind: "agent",
            actor_id: Some("svc-agent"),
            tenant_id: Some("acme"),
            user_id: None,
            client_id: Some("svc-agent"),
            grant_id: Some("g_1"),
            scopes: Some("tickets.read contacts.read"),
            reason: None,
            ip: Some("127.0.0.1"),
            user_agent: Some("curl/8"),
            detail: r#"{"aud":"http://127.0.0.1:8081","grant_type":"client_credentials"}"#,
        }
    }

    /// The documented format, pinned: a change here is a change to what SIEMs parse, and
    /// `docs/audit-export.md` shows this line.
    #[test]
    fn a_line_is_pinned() {
        let hash = "1ac38fe4142707ad44c73f6553bf9bd857b6fba2c1aa5947dbf32f8edf3221c2";
        let expected = format!(
            concat!(
                r#"{{"activity_id":1,"activity_name":"Assign Privileges","#,
                r#""actor":{{"app_name":"svc-agent","app_uid":"svc-agent","#,
                r#""user":{{"type":"Agent","type_id":99,"uid":"svc-agent"}}}},"#,
                r#""category_name":"Identity & Access Management","category_uid":3,"#,
                r#""class_name":"Authorize Session","class_uid":3003,"#,
                r#""http_request":{{"user_agent":"curl/8"}},"message":"token.issued","#,
                r#""metadata":{{"log_name":"audit","product":{{"name":"Mandate","#,
                r#""vendor_name":"Mandate","version":"{v}"}},"sequence":42,"#,
                r#""tenant_uid":"acme","uid":"42","version":"1.3.0"}},"#,
                r#""privileges":["tickets.read","contacts.read"],"#,
                r#""severity":"Informational","severity_id":1,"#,
                r#""src_endpoint":{{"ip":"127.0.0.1"}},"status":"Success","status_id":1,"#,
                r#""time":1700000000000,"type_name":"Authorize Session: Assign Privileges","#,
                r#""type_uid":300301,"unmapped":{{"action":"token.issued","#,
                r#""actor_id":"svc-agent","actor_kind":"agent","client_id":"svc-agent","#,
                r#""detail":{{"aud":"http://127.0.0.1:8081","grant_type":"client_credentials"}},"#,
                r#""grant_id":"g_1","hash":"{h}","ip":"127.0.0.1","#,
                r#""scopes":"tickets.read contacts.read","tenant_id":"acme","#,
                r#""user_agent":"curl/8"}}}}"#,
                "\n"
            ),
            v = PRODUCT_VERSION,
            h = hash
        );
        assert_eq!(line(&issued(), Some(hash)), expected);
    }

    #[test]
    fn the_raw_columns_reproduce_the_chain_hash() {
        let e = issued();
        let prev = crate::audit::GENESIS;
        let hash = crate::audit::link(prev, &e);
        let r = record(&e, Some(&hash));
        let u = &r["unmapped"];
        let detail = u["detail"].to_string();
        let s = |k: &str| u.get(k).and_then(Value::as_str);
        let again = ChainedFields {
            seq: r["metadata"]["sequence"].as_i64().unwrap(),
            at: r["time"].as_i64().unwrap() / 1000,
            action: s("action").unwrap(),
            actor_kind: s("actor_kind").unwrap(),
            actor_id: s("actor_id"),
            tenant_id: s("tenant_id"),
            user_id: s("user_id"),
            client_id: s("client_id"),
            grant_id: s("grant_id"),
            scopes: s("scopes"),
            reason: s("reason"),
            ip: s("ip"),
            user_agent: s("user_agent"),
            detail: &detail,
        };
        assert_eq!(crate::audit::link(prev, &again), hash);
    }

    #[test]
    fn failures_absent_fields_and_unknown_actions() {
        let mut e = issued();
        e.action = "login.failed";
        e.actor_kind = "user";
        e.client_id = None;
        e.scopes = Some("");
        e.reason = Some("bad password");
        e.user_agent = None;
        e.detail = "null";
        let r = record(&e, None);
        assert_eq!(r["class_uid"], 3002);
        assert_eq!(r["status"], "Failure");
        assert_eq!(r["status_detail"], "bad password");
        assert_eq!(r["actor"]["user"]["type"], "User");
        assert!(r.get("http_request").is_none());
        assert!(r.get("privileges").is_none(), "not an Authorize Session");
        assert_eq!(r["unmapped"]["scopes"], "", "empty is kept");
        assert!(r["unmapped"].get("hash").is_none());
        assert!(r["unmapped"].get("client_id").is_none());

        e.action = "something.new";
        let r = record(&e, None);
        assert_eq!(
            (r["class_uid"].as_u64(), r["category_uid"].as_u64()),
            (Some(0), Some(0))
        );
    }

    #[test]
    fn every_action_has_a_class_of_its_category_with_a_name() {
        for a in Action::ALL {
            let c = ocsf_class(a);
            assert_eq!(c.class_uid / 1000, c.category_uid, "{a:?}");
            match a {
                Action::AccessDenied => assert_eq!(c.class_uid, 6003),
                Action::AnomalyDetected => assert_eq!(c.class_uid, 2004),
                _ => assert!((3001..=3005).contains(&c.class_uid), "{a:?}"),
            }
            assert!(!c.activity_name.is_empty());
            assert_ne!(severity_name(c.severity_id), "Unknown");
        }
    }
}
