//! What a route requires of a token's scopes, and the hierarchy that widens a scope.
//!
//! The MCP authorization spec has resource servers honour scope hierarchies (a broader scope
//! such as `contacts.write` may imply `contacts.read`), so a principal's scopes are expanded by
//! the configured implications before a [`Requirement`] is checked. A failed check names the
//! scopes that would satisfy it, which becomes the `scope` attribute of the 403 challenge
//! (RFC 6750 §3.1) that tells MCP clients what to step up to.

use mandate_core::challenge::BearerError;
use mandate_core::scope::{ScopeSet, is_valid_token};
use std::collections::{BTreeMap, BTreeSet};

/// Scope implications: `broader → {narrower}`; applied transitively.
#[derive(Debug, Clone, Default)]
pub struct ScopeHierarchy {
    implies: BTreeMap<String, BTreeSet<String>>,
}

impl ScopeHierarchy {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares that holding `broader` also grants `narrower`.
    pub fn add(&mut self, broader: &str, narrower: &str) {
        self.implies
            .entry(broader.to_owned())
            .or_default()
            .insert(narrower.to_owned());
    }

    /// `scopes` plus everything they imply, transitively (cycles are harmless).
    pub fn expand(&self, scopes: &ScopeSet) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = scopes.iter().map(str::to_owned).collect();
        if self.implies.is_empty() {
            return out;
        }
        let mut pending: Vec<String> = out.iter().cloned().collect();
        while let Some(s) = pending.pop() {
            if let Some(narrower) = self.implies.get(&s) {
                for n in narrower {
                    if out.insert(n.clone()) {
                        pending.push(n.clone());
                    }
                }
            }
        }
        out
    }
}

/// A route's scope requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Every listed scope must be held.
    AllOf(Vec<String>),
    /// At least one listed scope must be held.
    AnyOf(Vec<String>),
}

impl Requirement {
    /// Exactly one scope. A string that is not a valid scope token can never be satisfied.
    pub fn scope(scope: &str) -> Self {
        Self::AllOf(vec![scope.to_owned()])
    }

    pub fn all_of<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::AllOf(scopes.into_iter().map(Into::into).collect())
    }

    /// At least one of `scopes`. An empty list can never be satisfied (fail closed).
    pub fn any_of<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::AnyOf(scopes.into_iter().map(Into::into).collect())
    }

    /// Checks `held` (expanded by `hierarchy`). On failure the error carries the scopes that
    /// would satisfy the requirement: all of them for `AllOf`; for `AnyOf`, the alternatives
    /// (a token holding them all certainly satisfies it).
    pub fn check(&self, held: &ScopeSet, hierarchy: &ScopeHierarchy) -> Result<(), BearerError> {
        let expanded = hierarchy.expand(held);
        let (ok, needed) = match self {
            Self::AllOf(s) => (s.iter().all(|x| expanded.contains(x)), s),
            Self::AnyOf(s) => (s.iter().any(|x| expanded.contains(x)), s),
        };
        if ok {
            return Ok(());
        }
        let needed =
            ScopeSet::from_tokens(needed.iter().filter(|s| is_valid_token(s))).unwrap_or_default();
        Err(BearerError::InsufficientScope(needed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn requirement_cases() {
        let mut h = ScopeHierarchy::new();
        h.add("contacts.admin", "contacts.write");
        h.add("contacts.write", "contacts.read");
        let cases: Vec<(Requirement, &str, Result<(), &str>, &str)> = vec![
            (
                Requirement::scope("contacts.read"),
                "contacts.read",
                Ok(()),
                "exact",
            ),
            (
                Requirement::scope("contacts.read"),
                "contacts.write",
                Ok(()),
                "implied",
            ),
            (
                Requirement::scope("contacts.read"),
                "contacts.admin",
                Ok(()),
                "transitive",
            ),
            (
                Requirement::scope("contacts.write"),
                "contacts.read",
                Err("contacts.write"),
                "narrower does not imply broader",
            ),
            (
                Requirement::scope("billing.read"),
                "",
                Err("billing.read"),
                "no scopes",
            ),
            (
                Requirement::all_of(["a", "b"]),
                "a",
                Err("a b"),
                "all_of names all",
            ),
            (
                Requirement::all_of(["a", "b"]),
                "a b c",
                Ok(()),
                "all_of satisfied",
            ),
            (Requirement::any_of(["a", "b"]), "b", Ok(()), "any_of one"),
            (
                Requirement::any_of(["a", "b"]),
                "c",
                Err("a b"),
                "any_of names alternatives",
            ),
            (
                Requirement::any_of(Vec::<String>::new()),
                "a",
                Err(""),
                "empty any_of fails closed",
            ),
            (
                Requirement::scope("bad scope"),
                "bad",
                Err(""),
                "invalid token never satisfied",
            ),
        ];
        for (req, held, expected, reason) in cases {
            let got = req.check(&set(held), &h);
            let expected = expected.map_err(|s| BearerError::InsufficientScope(set(s)));
            assert_eq!(got, expected, "{reason}");
        }
    }

    #[test]
    fn cyclic_hierarchy_terminates() {
        let mut h = ScopeHierarchy::new();
        h.add("a", "b");
        h.add("b", "a");
        assert_eq!(h.expand(&set("a")).len(), 2);
    }
}
