//! MCP client ID metadata documents: a `client_id` that is an https URL naming a JSON document
//! in which the client describes itself (draft-ietf-oauth-client-id-metadata-document, the
//! mechanism the MCP authorization spec prefers over dynamic registration).
//!
//! The server fetches the document when it first meets the client, which means an attacker
//! chooses a URL the server will request. The fetch itself is IO and lives in the server; this
//! module holds the decisions around it:
//!
//! - [`ClientIdUrl::parse`]: the URL is https, has a path, no query, fragment, user
//!   information, dot segments or wildcard, and is in canonical form, so the identity compared
//!   against the document is exactly one string. URL client ids cannot collide with registered
//!   ones, which may not contain `:` ([`crate::client::is_valid_client_id`]).
//! - [`check_address`]: every address the host resolves to must be public: not loopback,
//!   private (RFC 1918), carrier-grade NAT, unique-local, link-local, multicast, unspecified,
//!   documentation or otherwise reserved, including IPv4 addresses hidden in IPv6 forms
//!   (mapped, NAT64, 6to4; Teredo is refused outright). `allow_private` (for development) admits
//!   loopback, private, CGNAT and unique-local addresses, never link-local (cloud metadata
//!   endpoints live there), multicast or unspecified ones.
//! - [`validate_document`]: the document's `client_id` equals the URL exactly, it carries no
//!   secret, it authenticates with `none` or `private_key_jwt` only, and its redirect URIs and
//!   other metadata pass the same rules as dynamic registration
//!   ([`crate::registration`]), scope clamped to the same default maximum.
//! - [`cache_lifetime`]: how long to keep a fetched document, from `Cache-Control`, bounded.
//!
//! The server must: resolve the host once, check every resolved address, and connect to a
//! checked address (not re-resolve: DNS rebinding); not follow redirects; stop reading after
//! [`MAX_DOCUMENT_BYTES`]; give up after [`FETCH_TIMEOUT_SECONDS`]; and show the redirect host
//! ([`display_host`]) on the consent page, since the client chose its own name.

use crate::client::Agent;
use crate::error::OAuthError;
use crate::redirect_uri::RedirectUri;
use crate::registration::{self, ClientMetadata, Profile, RegistrationError, RegistrationPolicy};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Largest document accepted; stop reading the response body beyond it.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Longest the whole fetch may take.
pub const FETCH_TIMEOUT_SECONDS: u64 = 5;
/// Longest client id URL accepted.
pub const MAX_URL_LEN: usize = 2000;

/// Why a metadata document client was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("client_id URL {0}")]
    InvalidClientId(&'static str),
    #[error("the client metadata document's host resolves to an address that may not be fetched")]
    AddressNotAllowed,
    #[error("the client metadata document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the client metadata document is not a JSON object")]
    NotJson,
    #[error("the client metadata document's client_id is not its own URL")]
    ClientIdMismatch,
    #[error("a client metadata document must not contain a client secret")]
    SecretPresent,
    #[error("client metadata document: {}", .0.description())]
    Metadata(RegistrationError),
}

impl From<DocumentError> for OAuthError {
    fn from(e: DocumentError) -> Self {
        OAuthError::InvalidClient(e.to_string().into())
    }
}

/// A client id that is a metadata document URL, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdUrl {
    url: Url,
}

impl ClientIdUrl {
    /// Whether `client_id` is meant as a metadata document URL (rather than a registered id).
    pub fn is_candidate(client_id: &str) -> bool {
        client_id.starts_with("https://")
    }

    pub fn parse(raw: &str) -> Result<Self, DocumentError> {
        let fail = DocumentError::InvalidClientId;
        if raw.is_empty() || raw.len() > MAX_URL_LEN {
            return Err(fail("is empty or too long"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail("must be printable ASCII"));
        }
        if raw.contains('*') || raw.contains('\\') {
            return Err(fail("must not contain wildcards or backslashes"));
        }
        if raw.contains('#') {
            return Err(fail("must not contain a fragment"));
        }
        if raw.contains('?') {
            return Err(fail("must not contain a query"));
        }
        let url = Url::parse(raw).map_err(|_| fail("is not an absolute URL"))?;
        if url.scheme() != "https" {
            return Err(fail("must use https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(fail("must not contain user information"));
        }
        if url.host().is_none() {
            return Err(fail("must have a host"));
        }
        if url.path() == "/" || url.path().is_empty() {
            return Err(fail("must have a path"));
        }
        if url.as_str() != raw {
            return Err(fail(
                "must be in canonical form (lowercase host, no default port, no dot segments)",
            ));
        }
        Ok(Self { url })
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host, as shown to people and resolved for the fetch.
    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_owned()
    }

    /// The address, if the host is an IP literal (check it with [`check_address`] too).
    pub fn ip_literal(&self) -> Option<IpAddr> {
        match self.url.host() {
            Some(Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        }
    }
}

/// How an address may be treated as a fetch destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// Loopback, RFC 1918, CGNAT, unique-local: admitted only with `allow_private`.
    Private,
    /// Never a valid destination: unspecified, link-local, multicast, broadcast,
    /// documentation, benchmarking, reserved, Teredo.
    Forbidden,
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

pub fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    const TABLE: [([u8; 4], u32, AddressClass); 15] = [
        ([0, 0, 0, 0], 8, Forbidden),       // "this network", unspecified
        ([127, 0, 0, 0], 8, Private),       // loopback
        ([10, 0, 0, 0], 8, Private),        // RFC 1918
        ([172, 16, 0, 0], 12, Private),     // RFC 1918
        ([192, 168, 0, 0], 16, Private),    // RFC 1918
        ([100, 64, 0, 0], 10, Private),     // carrier-grade NAT (RFC 6598)
        ([169, 254, 0, 0], 16, Forbidden),  // link-local, cloud metadata
        ([192, 0, 0, 0], 24, Forbidden),    // IETF protocol assignments
        ([192, 0, 2, 0], 24, Forbidden),    // documentation
        ([198, 51, 100, 0], 24, Forbidden), // documentation
        ([203, 0, 113, 0], 24, Forbidden),  // documentation
        ([198, 18, 0, 0], 15, Forbidden),   // benchmarking
        ([192, 88, 99, 0], 24, Forbidden),  // 6to4 relay anycast
        ([224, 0, 0, 0], 4, Forbidden),     // multicast
        ([240, 0, 0, 0], 4, Forbidden),     // reserved, broadcast
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map_or(Public, |(_, _, class)| *class)
}

pub fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    let bits = u128::from(ip);
    let embedded_v4 = |shift: u32| Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32);
    let net = |s: [u16; 8]| Ipv6Addr::from(s);
    if ip.is_unspecified() {
        return Forbidden;
    }
    if ip.is_loopback() {
        return Private;
    }
    // IPv4-mapped (::ffff:a.b.c.d) and the well-known NAT64 prefix reach the embedded address.
    if in_v6(ip, net([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96)
        || in_v6(ip, net([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96)
    {
        return classify_v4(embedded_v4(0));
    }
    // 6to4 carries the IPv4 address in bits 16..48.
    if in_v6(ip, net([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16) {
        return classify_v4(embedded_v4(80));
    }
    const TABLE: [([u16; 8], u32, AddressClass); 9] = [
        ([0, 0, 0, 0, 0, 0, 0, 0], 96, Forbidden), // IPv4-compatible (deprecated)
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Private), // local-use NAT64
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Forbidden), // discard
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Forbidden), // Teredo
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Forbidden), // documentation
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Private), // unique-local
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, Forbidden), // link-local
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Forbidden), // site-local (deprecated)
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Forbidden), // multicast
    ];
    if let Some((_, _, class)) = TABLE
        .iter()
        .find(|(n, prefix, _)| in_v6(ip, net(*n), *prefix))
    {
        return *class;
    }
    // Everything routable on the internet is global unicast, 2000::/3.
    if in_v6(ip, net([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3) {
        Public
    } else {
        Forbidden
    }
}

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

/// Whether the server may connect to `ip` to fetch a metadata document (or a `jwks_uri`).
pub fn check_address(ip: IpAddr, allow_private: bool) -> Result<(), DocumentError> {
    match classify(ip) {
        AddressClass::Public => Ok(()),
        AddressClass::Private if allow_private => Ok(()),
        _ => Err(DocumentError::AddressNotAllowed),
    }
}

/// A validated metadata document client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadataDocument {
    pub client_id: ClientIdUrl,
    pub metadata: ClientMetadata,
}

impl ClientMetadataDocument {
    /// The agent this document describes: its id is the URL; like registered clients it
    /// belongs to no tenant and holds at most the default maximum scopes.
    pub fn to_agent(&self) -> Agent {
        let mut agent = self
            .metadata
            .to_agent(self.client_id.as_str().to_owned(), None);
        if self.metadata.client_name.is_none() {
            agent.name = self.client_id.host();
        }
        agent
    }
}

/// Validates a fetched document for `url`.
pub fn validate_document(
    url: &ClientIdUrl,
    body: &[u8],
    policy: &RegistrationPolicy,
) -> Result<ClientMetadataDocument, DocumentError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge);
    }
    let object = registration::parse_object(body).map_err(|_| DocumentError::NotJson)?;
    match object.get("client_id") {
        Some(serde_json::Value::String(id)) if id == url.as_str() => {}
        _ => return Err(DocumentError::ClientIdMismatch),
    }
    if object.contains_key("client_secret") || object.contains_key("client_secret_expires_at") {
        return Err(DocumentError::SecretPresent);
    }
    let metadata = registration::validate_object(&object, policy, Profile::MetadataDocument)
        .map_err(DocumentError::Metadata)?;
    if metadata.redirect_uris.is_empty() {
        return Err(DocumentError::Metadata(
            RegistrationError::InvalidRedirectUri(
                "a client metadata document must list redirect_uris".into(),
            ),
        ));
    }
    Ok(ClientMetadataDocument {
        client_id: url.clone(),
        metadata,
    })
}

/// What the consent page shows as where the user will be sent: the redirect URI's host, or
/// for a native app's private-use scheme, the scheme.
pub fn display_host(redirect_uri: &RedirectUri) -> String {
    match Url::parse(redirect_uri.as_str()) {
        Ok(u) => match u.host_str() {
            Some(h) if u.scheme() == "https" || u.scheme() == "http" => h.to_owned(),
            _ => u.scheme().to_owned(),
        },
        Err(_) => redirect_uri.as_str().to_owned(),
    }
}

/// Bounds on how long a fetched document is cached, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    /// Shortest lifetime used for a cacheable document, so a client cannot make every
    /// authorization request cost a fetch by sending `max-age=0`.
    pub min_seconds: u64,
    /// Longest lifetime, so changed redirect URIs or keys are picked up.
    pub max_seconds: u64,
    /// Lifetime when the response gives none.
    pub default_seconds: u64,
}

impl Default for CacheBounds {
    fn default() -> Self {
        Self {
            min_seconds: 60,
            max_seconds: 24 * 60 * 60,
            default_seconds: 60 * 60,
        }
    }
}

/// How long to cache a document given its `Cache-Control` header: 0 (do not store) for
/// `no-store` or `no-cache` (Mandate does not revalidate); otherwise `s-maxage` (Mandate's
/// cache is shared by all users), else `max-age`, else the default, clamped to the bounds.
/// Repeated directives use the smallest value; a malformed `max-age` counts as 0 (RFC 9111
/// §4.2.1 treats such responses as stale). Other headers (`Expires`) are not consulted.
pub fn cache_lifetime(cache_control: Option<&str>, bounds: &CacheBounds) -> u64 {
    let mut max_age: Option<u64> = None;
    let mut s_maxage: Option<u64> = None;
    for directive in cache_control.unwrap_or("").split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        let seconds = || {
            value
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .map_or(0, |v| v.parse::<u64>().unwrap_or(u64::MAX))
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return 0;
        } else if name.eq_ignore_ascii_case("max-age") {
            max_age = Some(max_age.map_or(seconds(), |m| m.min(seconds())));
        } else if name.eq_ignore_ascii_case("s-maxage") {
            s_maxage = Some(s_maxage.map_or(seconds(), |m| m.min(seconds())));
        }
    }
    let min = bounds.min_seconds.min(bounds.max_seconds);
    s_maxage
        .or(max_age)
        .unwrap_or(bounds.default_seconds)
        .clamp(min, bounds.max_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::test_keys::TestKey;
    use crate::scope::ScopeSet;
    use proptest::prelude::*;
    use serde_json::json;

    const URL: &str = "https://app.example.com/oauth/client.json";

    fn policy() -> RegistrationPolicy {
        RegistrationPolicy {
            default_max_scopes: ScopeSet::parse("contacts.read").unwrap(),
        }
    }

    fn doc() -> serde_json::Value {
        json!({
            "client_id": URL,
            "client_name": "Example MCP client",
            "redirect_uris": ["https://app.example.com/callback", "http://127.0.0.1/cb"],
        })
    }

    fn check(v: &serde_json::Value) -> Result<ClientMetadataDocument, DocumentError> {
        validate_document(
            &ClientIdUrl::parse(URL).unwrap(),
            v.to_string().as_bytes(),
            &policy(),
        )
    }

    #[test]
    fn client_id_url_cases() {
        let cases: &[(&str, bool, &str)] = &[
            (URL, true, "typical"),
            ("https://app.example.com:8443/c", true, "explicit port"),
            ("https://app.example.com/", false, "no path"),
            ("https://app.example.com", false, "bare host"),
            ("http://app.example.com/c.json", false, "http"),
            ("https://app.example.com/c.json#x", false, "fragment"),
            ("https://app.example.com/c.json?x=1", false, "query"),
            ("https://u:p@app.example.com/c.json", false, "userinfo"),
            (
                "https://app.example.com/a/../c.json",
                false,
                "dot-dot segment",
            ),
            ("https://app.example.com/a/./c.json", false, "dot segment"),
            (
                "https://app.example.com/%2e%2e/c.json",
                false,
                "encoded dot segment",
            ),
            ("https://APP.example.com/c.json", false, "uppercase host"),
            ("https://app.example.com:443/c.json", false, "default port"),
            ("https://*.example.com/c.json", false, "wildcard"),
            ("https://app.example.com/c json", false, "space"),
            ("https://bücher.example/c.json", false, "non-ASCII"),
            ("app.example.com/c.json", false, "relative"),
        ];
        for (raw, ok, reason) in cases {
            assert_eq!(ClientIdUrl::parse(raw).is_ok(), *ok, "{reason}: {raw}");
        }
        assert!(ClientIdUrl::is_candidate(URL));
        assert!(!ClientIdUrl::is_candidate("cli-agent"));
        let u = ClientIdUrl::parse("https://[2001:db8::1]/c").unwrap();
        assert_eq!(u.ip_literal(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(ClientIdUrl::parse(URL).unwrap().host(), "app.example.com");
    }

    #[test]
    fn address_cases() {
        let cases: &[(&str, AddressClass, &str)] = &[
            ("93.184.216.34", AddressClass::Public, "public v4"),
            ("2606:2800:220:1::1", AddressClass::Public, "public v6"),
            ("127.0.0.1", AddressClass::Private, "loopback"),
            ("127.255.0.9", AddressClass::Private, "loopback range"),
            ("10.1.2.3", AddressClass::Private, "10/8"),
            ("172.16.0.1", AddressClass::Private, "172.16/12"),
            ("172.31.255.255", AddressClass::Private, "172.16/12 end"),
            ("172.32.0.1", AddressClass::Public, "just past 172.16/12"),
            ("192.168.1.1", AddressClass::Private, "192.168/16"),
            ("100.64.0.1", AddressClass::Private, "CGNAT"),
            ("100.127.255.255", AddressClass::Private, "CGNAT end"),
            ("100.128.0.1", AddressClass::Public, "past CGNAT"),
            ("169.254.169.254", AddressClass::Forbidden, "cloud metadata"),
            ("0.0.0.0", AddressClass::Forbidden, "unspecified"),
            ("0.1.2.3", AddressClass::Forbidden, "this network"),
            ("224.0.0.1", AddressClass::Forbidden, "multicast"),
            ("255.255.255.255", AddressClass::Forbidden, "broadcast"),
            ("240.0.0.1", AddressClass::Forbidden, "reserved"),
            ("192.0.2.1", AddressClass::Forbidden, "documentation"),
            ("198.18.0.1", AddressClass::Forbidden, "benchmarking"),
            ("::", AddressClass::Forbidden, "v6 unspecified"),
            ("::1", AddressClass::Private, "v6 loopback"),
            ("fc00::1", AddressClass::Private, "unique-local fc"),
            ("fd12:3456::1", AddressClass::Private, "unique-local fd"),
            ("fe80::1", AddressClass::Forbidden, "v6 link-local"),
            ("fec0::1", AddressClass::Forbidden, "site-local"),
            ("ff02::1", AddressClass::Forbidden, "v6 multicast"),
            ("::ffff:127.0.0.1", AddressClass::Private, "mapped loopback"),
            (
                "::ffff:169.254.169.254",
                AddressClass::Forbidden,
                "mapped metadata",
            ),
            ("::ffff:10.0.0.1", AddressClass::Private, "mapped private"),
            (
                "::ffff:93.184.216.34",
                AddressClass::Public,
                "mapped public",
            ),
            ("::127.0.0.1", AddressClass::Forbidden, "IPv4-compatible"),
            (
                "64:ff9b::7f00:1",
                AddressClass::Private,
                "NAT64 of loopback",
            ),
            (
                "64:ff9b::a9fe:a9fe",
                AddressClass::Forbidden,
                "NAT64 of metadata",
            ),
            (
                "64:ff9b::5db8:d822",
                AddressClass::Public,
                "NAT64 of public",
            ),
            ("2002:7f00:1::", AddressClass::Private, "6to4 of loopback"),
            (
                "2002:a9fe:a9fe::1",
                AddressClass::Forbidden,
                "6to4 of metadata",
            ),
            ("2001::1", AddressClass::Forbidden, "Teredo"),
            ("2001:db8::1", AddressClass::Forbidden, "v6 documentation"),
            ("100::1", AddressClass::Forbidden, "discard"),
            ("4000::1", AddressClass::Forbidden, "outside global unicast"),
        ];
        for (ip, class, reason) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(classify(ip), *class, "{reason}: {ip}");
            assert_eq!(
                check_address(ip, false).is_ok(),
                *class == AddressClass::Public,
                "{reason}"
            );
            assert_eq!(
                check_address(ip, true).is_ok(),
                *class != AddressClass::Forbidden,
                "{reason} with allow_private"
            );
        }
    }

    #[test]
    fn a_valid_document() {
        let d = check(&doc()).unwrap();
        assert_eq!(d.client_id.as_str(), URL);
        assert_eq!(
            d.metadata.token_endpoint_auth_method,
            registration::AuthMethod::None,
            "default for documents"
        );
        let agent = d.to_agent();
        assert_eq!(agent.client_id, URL);
        assert_eq!(agent.name, "Example MCP client");
        assert_eq!(agent.max_scopes, policy().default_max_scopes);
        let hosts: Vec<String> = d.metadata.redirect_uris.iter().map(display_host).collect();
        assert_eq!(hosts, ["app.example.com", "127.0.0.1"]);
        let native = RedirectUri::parse("com.example.app:/cb").unwrap();
        assert_eq!(display_host(&native), "com.example.app");

        let mut pk = doc();
        pk["token_endpoint_auth_method"] = json!("private_key_jwt");
        pk["jwks"] = json!({"keys": [TestKey::ed25519().jwk("k")]});
        assert!(check(&pk).is_ok());
    }

    #[test]
    fn document_refusals() {
        let with = |k: &str, v: serde_json::Value| {
            let mut d = doc();
            d[k] = v;
            d
        };
        let without = |k: &str| {
            let mut d = doc();
            d.as_object_mut().unwrap().remove(k);
            d
        };
        let cases: Vec<(serde_json::Value, DocumentError, &str)> = vec![
            (
                without("client_id"),
                DocumentError::ClientIdMismatch,
                "no client_id",
            ),
            (
                with(
                    "client_id",
                    json!("https://app.example.com/oauth/other.json"),
                ),
                DocumentError::ClientIdMismatch,
                "other URL",
            ),
            (
                with(
                    "client_id",
                    json!("https://app.example.com/oauth/client.json/"),
                ),
                DocumentError::ClientIdMismatch,
                "trailing slash",
            ),
            (
                with(
                    "client_id",
                    json!("HTTPS://app.example.com/oauth/client.json"),
                ),
                DocumentError::ClientIdMismatch,
                "case differs",
            ),
            (json!([]), DocumentError::NotJson, "array"),
            (
                with("client_secret", json!("s")),
                DocumentError::SecretPresent,
                "secret",
            ),
            (
                with("token_endpoint_auth_method", json!("client_secret_basic")),
                DocumentError::Metadata(RegistrationError::InvalidClientMetadata(
                    "a client metadata document may only use none or private_key_jwt".into(),
                )),
                "secret-based method",
            ),
        ];
        for (v, expected, reason) in cases {
            assert_eq!(check(&v).unwrap_err(), expected, "{reason}");
        }
        let codes: Vec<(serde_json::Value, &str, &str)> = vec![
            (
                without("redirect_uris"),
                "invalid_redirect_uri",
                "no redirect URIs",
            ),
            (
                with("redirect_uris", json!(["javascript:alert(1)"])),
                "invalid_redirect_uri",
                "javascript",
            ),
            (
                with("redirect_uris", json!(["https://app.example.com/cb#x"])),
                "invalid_redirect_uri",
                "fragment",
            ),
            (
                with("redirect_uris", json!(["https://*.example.com/cb"])),
                "invalid_redirect_uri",
                "wildcard",
            ),
            (
                with("grant_types", json!(["client_credentials"])),
                "invalid_client_metadata",
                "client credentials",
            ),
            (
                with("token_endpoint_auth_method", json!("private_key_jwt")),
                "invalid_client_metadata",
                "private_key_jwt without keys",
            ),
        ];
        for (v, code, reason) in codes {
            match check(&v) {
                Err(DocumentError::Metadata(e)) => assert_eq!(e.code(), code, "{reason}"),
                other => panic!("{reason}: unexpected {other:?}"),
            }
        }
        let big = json!({"client_id": URL, "pad": "x".repeat(MAX_DOCUMENT_BYTES)});
        assert_eq!(check(&big).unwrap_err(), DocumentError::TooLarge);
        let e: OAuthError = DocumentError::ClientIdMismatch.into();
        assert_eq!(e.code(), "invalid_client");
    }

    #[test]
    fn cache_lifetime_cases() {
        let b = CacheBounds {
            min_seconds: 60,
            max_seconds: 3600,
            default_seconds: 600,
        };
        let cases: &[(Option<&str>, u64, &str)] = &[
            (None, 600, "no header: default"),
            (Some(""), 600, "empty header"),
            (Some("max-age=300"), 300, "within bounds"),
            (Some("public, max-age=300"), 300, "with other directives"),
            (Some("MAX-AGE=300"), 300, "case-insensitive"),
            (Some("max-age=\"300\""), 300, "quoted"),
            (Some("max-age=5"), 60, "below min"),
            (Some("max-age=0"), 60, "zero clamps to min"),
            (Some("max-age=999999999"), 3600, "above max"),
            (Some("max-age=99999999999999999999999"), 3600, "overflow"),
            (Some("max-age=abc"), 60, "malformed counts as stale"),
            (Some("max-age=-5"), 60, "negative"),
            (Some("max-age=300, max-age=100"), 100, "repeated: smallest"),
            (Some("max-age=300, s-maxage=900"), 900, "s-maxage wins"),
            (Some("no-store"), 0, "no-store"),
            (Some("max-age=300, no-store"), 0, "no-store anywhere"),
            (Some("No-Cache"), 0, "no-cache"),
            (Some("private, max-age=120"), 120, "private ignored"),
        ];
        for (header, expected, reason) in cases {
            assert_eq!(cache_lifetime(*header, &b), *expected, "{reason}");
        }
    }

    proptest! {
        #[test]
        fn cache_lifetime_is_bounded(header in "[a-zA-Z0-9=,\" -]{0,40}", min in 0u64..100, extra in 0u64..10_000) {
            let b = CacheBounds { min_seconds: min, max_seconds: min + extra, default_seconds: 50 };
            let got = cache_lifetime(Some(&header), &b);
            prop_assert!(got == 0 || (got >= min && got <= min + extra));
        }

        #[test]
        fn mapped_addresses_classify_like_their_ipv4(a in any::<u32>()) {
            let v4 = Ipv4Addr::from(a);
            prop_assert_eq!(classify_v6(v4.to_ipv6_mapped()), classify_v4(v4));
        }

        #[test]
        fn client_id_parsing_never_panics(s in "\\PC{0,60}") {
            let _ = ClientIdUrl::parse(&s);
        }
    }
}
