//! Form and query parameters, parsed the way RFC 6749 §3.1 and §3.2 require.
//!
//! "Parameters sent without a value MUST be treated as if they were omitted from the request"
//! and "Request and response parameters MUST NOT be included more than once". Generic form
//! extractors silently keep the first or last duplicate; this parser refuses them, so an
//! attacker cannot smuggle a second `redirect_uri` past one layer and have another read it.

use crate::error::OAuthError;
use std::collections::BTreeMap;

/// Upper bound on the number of parameters in one request: far above any legitimate request,
/// low enough that a hostile one costs little.
pub const MAX_PARAMS: usize = 64;

/// Whether text holds a NUL character, raw or as a JSON `\u0000` escape. No identifier,
/// secret or name Mandate handles may contain one (PostgreSQL text cannot store it, and it
/// truncates strings in C-based tools), so inputs holding one are refused at the edge.
pub fn contains_nul(input: &[u8]) -> bool {
    input.contains(&0) || input.windows(6).any(|w| w == b"\\u0000")
}

/// Whether percent-encoded text (a path, a query, a form body) holds an encoded NUL, `%00`,
/// which decoding would turn into the character [`contains_nul`] refuses.
pub fn contains_encoded_nul(input: &[u8]) -> bool {
    input.windows(3).any(|w| w == b"%00")
}

/// Parsed, de-duplicated parameters of one request.
#[derive(Debug, Default, Clone)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (a body or a query string).
    pub fn parse(input: &[u8]) -> Result<Self, OAuthError> {
        let mut map = BTreeMap::new();
        for (count, (key, value)) in form_urlencoded::parse(input).enumerate() {
            if count >= MAX_PARAMS {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            if value.is_empty() {
                continue;
            }
            if key.contains('\0') || value.contains('\0') {
                return Err(OAuthError::invalid_request(
                    "parameters must not contain NUL characters",
                ));
            }
            let key = key.into_owned();
            if map.contains_key(&key) {
                return Err(OAuthError::InvalidRequest(
                    format!("parameter `{}` is included more than once", printable(&key)).into(),
                ));
            }
            map.insert(key, value.into_owned());
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The parameter's value, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::InvalidRequest(format!("missing required parameter `{name}`").into())
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// A parameter name safe to echo in an error: printable ASCII, at most 40 characters.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_in_any_spelling() {
        assert!(Params::parse(b"client_id=a%00b").is_err());
        assert!(Params::parse(b"a%00=b").is_err());
        assert!(Params::parse(b"client_id=ab").is_ok());
        assert!(contains_nul(br#"{"a":"x\u0000"}"#));
        assert!(contains_nul(b"a\0b"));
        assert!(!contains_nul(br#"{"a":"x\u0001"}"#));
    }

    #[test]
    fn duplicates_are_refused_with_the_parameter_named() {
        let err = Params::parse(b"a=1&redirect_uri=x&redirect_uri=y").unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        assert!(err.description().contains("redirect_uri"));
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let p = Params::parse(b"scope=&state=abc").unwrap();
        assert_eq!(p.get("scope"), None);
        assert_eq!(p.get("state"), Some("abc"));
        // an empty duplicate does not count as a second value either
        assert!(Params::parse(b"state=abc&state=").is_ok());
    }

    #[test]
    fn percent_encoding_is_decoded() {
        let p = Params::parse(b"redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=a+b").unwrap();
        assert_eq!(p.get("redirect_uri"), Some("http://127.0.0.1/cb"));
        assert_eq!(p.get("scope"), Some("a b"));
    }

    #[test]
    fn too_many_parameters_are_refused() {
        let body: String = (0..100).map(|i| format!("p{i}=v&")).collect();
        assert!(Params::parse(body.as_bytes()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_never_keeps_duplicates(input in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            if let Ok(p) = Params::parse(&input) {
                proptest::prop_assert!(p.0.len() <= MAX_PARAMS);
                proptest::prop_assert!(p.0.values().all(|v| !v.is_empty()));
            }
        }
    }

    #[test]
    fn require_names_the_missing_parameter() {
        let err = Params::parse(b"").unwrap().require("code").unwrap_err();
        assert!(err.description().contains("`code`"));
    }
}
