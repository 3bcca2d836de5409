//! Tenants and the people in them.
//!
//! A tenant is an organisation; every user, grant and event belongs to exactly one. Login names
//! are unique across the whole server so the login page need not ask for a tenant first.

use serde::{Deserialize, Serialize};

/// Tenant identifiers are short slugs (`acme`) chosen by the operator.
pub fn is_valid_slug(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Login names: 1 to 64 printable ASCII characters without spaces (an email address fits).
pub fn is_valid_login(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub login: String,
    pub display_name: String,
    /// PHC-format argon2id hash; never the password itself.
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub disabled: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("login", &self.login)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_and_login_rules() {
        assert!(is_valid_slug("acme"));
        assert!(is_valid_slug("acme-2_eu"));
        assert!(!is_valid_slug("Acme"));
        assert!(!is_valid_slug("-acme"));
        assert!(!is_valid_slug(""));
        assert!(is_valid_login("alice@acme.example"));
        assert!(!is_valid_login("al ice"));
        assert!(!is_valid_login(&"a".repeat(65)));
    }

    #[test]
    fn user_debug_hides_the_password_hash() {
        let u = User {
            id: "u_1".into(),
            tenant_id: "acme".into(),
            login: "alice".into(),
            display_name: "Alice".into(),
            password_hash: "$argon2id$secret".into(),
            disabled: false,
        };
        assert!(!format!("{u:?}").contains("argon2id"));
    }
}
