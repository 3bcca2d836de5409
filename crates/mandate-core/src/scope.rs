//! Scope sets and their algebra.
//!
//! A token's scope is always computed as an intersection (agent maximum ∩ user approval ∩
//! request), so the type offers intersection and subset tests and keeps its members sorted,
//! giving every set one canonical string form. Parsing follows RFC 6749 §3.3:
//! `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, separated by spaces.

use crate::error::OAuthError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// Longest scope token accepted; catalog names are short, and this bounds hostile input.
pub const MAX_SCOPE_TOKEN_LEN: usize = 128;

/// A set of valid scope tokens in canonical (sorted) order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<String>);

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope token contains a character RFC 6749 §3.3 does not allow")]
    InvalidCharacter,
    #[error("scope token is longer than {MAX_SCOPE_TOKEN_LEN} characters")]
    TooLong,
}

impl From<ScopeError> for OAuthError {
    fn from(e: ScopeError) -> Self {
        OAuthError::InvalidScope(e.to_string().into())
    }
}

/// Whether `token` is one RFC 6749 scope-token.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_SCOPE_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

impl ScopeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a space-delimited scope string. Repeated spaces are tolerated; repeated tokens
    /// collapse into one.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if token.len() > MAX_SCOPE_TOKEN_LEN {
                return Err(ScopeError::TooLong);
            }
            if !is_valid_token(token) {
                return Err(ScopeError::InvalidCharacter);
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    /// Builds a set from tokens already known to be valid (e.g. the scope catalog); invalid
    /// tokens are an error rather than silently dropped.
    pub fn from_tokens<I, S>(tokens: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for t in tokens {
            let t = t.as_ref();
            if !is_valid_token(t) {
                return Err(if t.len() > MAX_SCOPE_TOKEN_LEN {
                    ScopeError::TooLong
                } else {
                    ScopeError::InvalidCharacter
                });
            }
            set.insert(t.to_owned());
        }
        Ok(Self(set))
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ScopeSet::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a scope lets an agent do, as a person reading a consent page sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only looks at data (`contacts.read`, `read:org`).
    Read,
    /// Creates, changes or deletes something, or anything not recognisably read-only.
    Change,
}

/// Words that name read-only access when they are a scope's first or last segment.
const READ_VERBS: &[&str] = &["read", "readonly", "read_only", "view", "list"];

impl Access {
    /// Classifies a scope by its name: `Read` when its last (or, for `read:thing` styles,
    /// first) `.`/`:`/`/`-separated segment is a read verb, `Change` otherwise. Unknown names
    /// count as changes, so nothing is presented as harmless by mistake.
    pub fn of(scope: &str) -> Self {
        let mut segments = scope.split(['.', ':', '/']);
        let first = segments.next().unwrap_or_default();
        let last = segments.next_back().unwrap_or_default();
        let is_verb = |s: &str| READ_VERBS.iter().any(|v| v.eq_ignore_ascii_case(s));
        if is_verb(last) || (!last.is_empty() && is_verb(first)) {
            Self::Read
        } else {
            Self::Change
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn parse_cases() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("", Some(""), "empty string is the empty set"),
            ("b a", Some("a b"), "members are sorted"),
            ("a  a b ", Some("a b"), "extra spaces and repeats collapse"),
            ("contacts.read", Some("contacts.read"), "dots are allowed"),
            ("a\"b", None, "double quote is outside the grammar"),
            ("a\\b", None, "backslash is outside the grammar"),
            ("é", None, "non-ASCII is outside the grammar"),
            ("a\tb", None, "tab is not a separator"),
        ];
        for (input, expected, reason) in cases {
            let got = ScopeSet::parse(input).ok().map(|s| s.to_string());
            assert_eq!(got.as_deref(), *expected, "{reason}: {input:?}");
        }
        assert_eq!(ScopeSet::parse(&"x".repeat(200)), Err(ScopeError::TooLong));
    }

    #[test]
    fn access_cases() {
        let cases: &[(&str, Access, &str)] = &[
            ("contacts.read", Access::Read, "a `.read` suffix reads"),
            (
                "contacts.write",
                Access::Change,
                "a `.write` suffix changes",
            ),
            (
                "billing.refund",
                Access::Change,
                "an unknown verb is a change",
            ),
            ("read:org", Access::Read, "a `read:` prefix reads"),
            ("api/tickets.view", Access::Read, "a view verb reads"),
            (
                "read",
                Access::Change,
                "a bare word names no resource: not assumed harmless",
            ),
            (
                "openid",
                Access::Change,
                "no verb at all is not assumed harmless",
            ),
            (
                "contacts.reader",
                Access::Change,
                "only whole segments count",
            ),
        ];
        for (scope, expected, reason) in cases {
            assert_eq!(Access::of(scope), *expected, "{reason}: {scope}");
        }
    }

    #[test]
    fn algebra() {
        assert_eq!(set("a b c").intersection(&set("b c d")), set("b c"));
        assert_eq!(set("a").union(&set("b")), set("a b"));
        assert_eq!(set("a b").difference(&set("b")), set("a"));
        assert!(set("a").is_subset(&set("a b")));
        assert!(!set("a c").is_subset(&set("a b")));
    }

    #[test]
    fn serde_uses_the_space_delimited_form() {
        let json = serde_json::to_string(&set("b a")).unwrap();
        assert_eq!(json, "\"a b\"");
        let back: ScopeSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set("a b"));
        assert!(serde_json::from_str::<ScopeSet>("\"a\\\"b\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = ScopeSet::parse(&s);
        }

        #[test]
        fn intersection_is_subset_of_both(a in "[a-d ]{0,12}", b in "[a-d ]{0,12}") {
            let (a, b) = (set(&a), set(&b));
            let i = a.intersection(&b);
            prop_assert!(i.is_subset(&a));
            prop_assert!(i.is_subset(&b));
        }

        #[test]
        fn display_round_trips(s in "[a-z.]{1,8}( [a-z.]{1,8}){0,5}") {
            let parsed = set(&s);
            prop_assert_eq!(set(&parsed.to_string()), parsed);
        }
    }
}
