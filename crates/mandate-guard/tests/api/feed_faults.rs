//! The feed subscriber against a hostile revocation feed.
//!
//! The guard's feed is pointed at a raw TCP server on 127.0.0.1:0 that answers each connection
//! with scripted bytes (garbage, oversized or cut-off events, wrong status or content type,
//! silence), while the real Mandate server still provides discovery, keys, tokens and
//! introspection. Whatever the feed does, the subscriber must skip what is malformed, reconnect
//! from the last entry it applied, keep its memory bounded and, while it has no working feed,
//! fall back to introspection: never crash, never apply garbage, never lose a revocation.

use crate::helpers::*;
use mandate_core::time::ManualClock;
use mandate_guard::{FeedHandle, Guard, Principal};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the hostile feed ends one connection after writing its bytes.
#[derive(Clone, Copy)]
enum End {
    /// A normal close (FIN).
    Close,
    /// A connection reset (RST).
    Reset,
    /// Keeps the connection open and says nothing more.
    Hang,
}

/// What the hostile feed sends on one connection.
#[derive(Clone)]
struct Reply {
    bytes: Vec<u8>,
    end: End,
}

impl Reply {
    fn new(bytes: impl Into<Vec<u8>>, end: End) -> Self {
        Self {
            bytes: bytes.into(),
            end,
        }
    }

    /// A `200 text/event-stream` response whose body is `body`.
    fn sse(body: impl AsRef<[u8]>, end: End) -> Self {
        let mut bytes = SSE_HEAD.as_bytes().to_vec();
        bytes.extend_from_slice(body.as_ref());
        Self::new(bytes, end)
    }
}

const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";

/// A feed that answers connection `i` with `script[i]` (the last reply repeats) and records
/// every request head it receives.
struct HostileFeed {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn spawn_hostile_feed(script: Vec<Reply>) -> HostileFeed {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/revocations", listener.local_addr().unwrap());
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = requests.clone();
    tokio::spawn(async move {
        for i in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let reply = script[i.min(script.len() - 1)].clone();
            let seen = seen.clone();
            tokio::spawn(async move { answer(stream, reply, seen).await });
        }
    });
    HostileFeed { url, requests }
}

async fn answer(mut stream: TcpStream, reply: Reply, seen: Arc<Mutex<Vec<String>>>) {
    let head = read_head(&mut stream).await;
    seen.lock().unwrap().push(head);
    // The guard may hang up first (that is the point of some replies): write errors are fine.
    let _ = stream.write_all(&reply.bytes).await;
    let _ = stream.flush().await;
    match reply.end {
        End::Close => {}
        End::Reset => {
            let _ = stream.set_zero_linger();
        }
        End::Hang => {
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }
}

/// The request head, lowercased, up to the blank line.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

impl HostileFeed {
    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The `Last-Event-ID` header of each request so far.
    fn last_event_ids(&self) -> Vec<Option<String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|head| {
                head.lines()
                    .find_map(|l| l.strip_prefix("last-event-id:"))
                    .map(|v| v.trim().to_owned())
            })
            .collect()
    }

    /// Waits until at least `n` connections were made.
    async fn wait_requests(&self, n: usize) {
        eventually(&format!("{n} feed connections"), || {
            self.request_count() >= n
        })
        .await;
    }
}

/// Polls `done` every 10 ms for up to 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A guard for the demo CRM trusting the real issuer but following `feed`, with a short read
/// timeout so silent-feed cases finish quickly.
async fn guard_on(
    issuer: &Issuer,
    feed: &HostileFeed,
    clock: Arc<ManualClock>,
) -> (Guard, FeedHandle) {
    let guard = Guard::builder(&issuer.issuer, CRM)
        .clock(clock)
        .revocation_feed_endpoint(&feed.url)
        .feed_read_timeout(Duration::from_millis(300))
        .feed_grace(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let handle = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    (guard, handle)
}

/// A fresh token from the real issuer and what the guard makes of it.
async fn token_and_principal(issuer: &Issuer, guard: &Guard) -> (String, Principal) {
    let token = issuer.token("tickets.read").await;
    let principal = guard.validate_token(&token).await.unwrap();
    (token, principal)
}

/// The feed entry revoking `principal`'s token.
fn token_entry(seq: i64, principal: &Principal) -> serde_json::Value {
    json!({
        "seq": seq,
        "at": principal.expires_at.unix() - 900,
        "tenant": "acme",
        "kind": "token",
        "jti": principal.jti,
        "expires_at": principal.expires_at.unix(),
    })
}

/// One SSE event of type `revocation`.
fn event(id: &str, data: &str) -> String {
    format!("id: {id}\nevent: revocation\ndata: {data}\n\n")
}

async fn accepted(guard: &Guard, token: &str) -> bool {
    guard.validate_token(token).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_skipped_and_a_valid_one_after_them_is_applied() {
    let issuer = spawn_issuer().await;
    let clock = clock_now();
    // A guard without a feed, only to learn the tokens' ids.
    let probe = issuer.guard(clock.clone()).await;
    let (a, pa) = token_and_principal(&issuer, &probe).await;
    let (b, pb) = token_and_principal(&issuer, &probe).await;
    let entry_a = token_entry(1, &pa);
    let mut no_expiry = entry_a.clone();
    no_expiry.as_object_mut().unwrap().remove("expires_at");
    let mut text_expiry = entry_a.clone();
    text_expiry["expires_at"] = json!("soon");
    let mut unknown_kind = entry_a.clone();
    unknown_kind["kind"] = json!("everything");
    unknown_kind["grant_id"] = json!(pa.grant_id);
    let garbage = [
        event("1", "revoke everything"),
        event("1", "[1]"),
        event("1", "{\"seq\": 1"),
        event("1", &no_expiry.to_string()),
        event("1", &text_expiry.to_string()),
        event("1", &unknown_kind.to_string()),
        // A well-formed entry, but not sent as a revocation event.
        format!("id: 1\nevent: message\ndata: {entry_a}\n\n"),
        format!("id: 1\ndata: {entry_a}\n\n"),
        // Fields and comments the subscriber has no use for.
        ": a comment\nretry: 1\nfoo: bar\n\n".to_owned(),
    ]
    .concat();
    let mut invalid_utf8 = b"id: 1\nevent: revocation\ndata: \xff\xfe".to_vec();
    invalid_utf8.extend_from_slice(entry_a.to_string().as_bytes());
    invalid_utf8.extend_from_slice(b"\n\n: keep-alive\n\n");
    let valid = event("9", &token_entry(9, &pb).to_string());
    let feed = spawn_hostile_feed(vec![
        Reply::sse(garbage, End::Close),
        // Invalid UTF-8 spoils its own event only: the valid one after it, on the same
        // connection, is still read.
        Reply::sse([invalid_utf8, valid.into_bytes()].concat(), End::Hang),
    ])
    .await;
    let (guard, handle) = guard_on(&issuer, &feed, clock).await;

    eventually("the valid entry", || handle.last_seq() == Some(9)).await;
    assert!(!accepted(&guard, &b).await, "the valid entry is applied");
    assert!(
        accepted(&guard, &a).await,
        "no malformed event revoked anything"
    );
    assert_eq!(guard.revocations().len(), 1);
    assert_eq!(
        feed.last_event_ids()[..2],
        [None, None],
        "nothing was applied before the valid entry, so no resume position"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_drops_the_connection_and_the_guard_keeps_working() {
    let issuer = spawn_issuer().await;
    let clock = clock_now();
    let probe = issuer.guard(clock.clone()).await;
    let (a, pa) = token_and_principal(&issuer, &probe).await;
    let (b, _) = token_and_principal(&issuer, &probe).await;
    // 8 MiB on one line that never ends, then many short lines with no blank line between.
    let mut one_line = b"id: 1\nevent: revocation\ndata: ".to_vec();
    one_line.resize(one_line.len() + 8 * 1024 * 1024, b'a');
    let many_lines = "data: x\n".repeat(20_000);
    // A legitimate entry may still be large-ish: unknown fields are ignored.
    let mut padded = token_entry(3, &pa);
    padded["padding"] = json!("p".repeat(30_000));
    let feed = spawn_hostile_feed(vec![
        Reply::sse(one_line, End::Hang),
        Reply::sse(many_lines, End::Hang),
        Reply::sse(event("3", &padded.to_string()), End::Hang),
    ])
    .await;
    let (guard, handle) = guard_on(&issuer, &feed, clock).await;

    feed.wait_requests(3).await;
    eventually("the entry after the oversized ones", || {
        handle.last_seq() == Some(3)
    })
    .await;
    assert!(!accepted(&guard, &a).await);
    assert!(accepted(&guard, &b).await, "the guard keeps working");
    assert_eq!(feed.last_event_ids(), [None, None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_event_resumes_after_the_last_applied_entry() {
    let issuer = spawn_issuer().await;
    let clock = clock_now();
    let probe = issuer.guard(clock.clone()).await;
    let (a, pa) = token_and_principal(&issuer, &probe).await;
    let (b, pb) = token_and_principal(&issuer, &probe).await;
    let entry_b = token_entry(6, &pb).to_string();
    let feed = spawn_hostile_feed(vec![
        // Entry 5, then entry 6 without the blank line that would complete it, then FIN.
        Reply::sse(
            format!(
                "{}id: 6\nevent: revocation\ndata: {entry_b}\n",
                event("5", &token_entry(5, &pa).to_string())
            ),
            End::Close,
        ),
        // Half a line, then RST.
        Reply::sse("id: 6\nevent: revoc", End::Reset),
        Reply::sse(event("6", &entry_b), End::Hang),
    ])
    .await;
    let (guard, handle) = guard_on(&issuer, &feed, clock).await;

    feed.wait_requests(3).await;
    eventually("entry 6", || handle.last_seq() == Some(6)).await;
    assert_eq!(
        feed.last_event_ids(),
        [None, Some("5".to_owned()), Some("5".to_owned())],
        "each reconnect resumes after entry 5: the cut-off entry 6 was never applied"
    );
    assert!(!accepted(&guard, &a).await);
    assert!(!accepted(&guard, &b).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_that_go_backwards_or_are_not_numbers_do_not_move_the_position() {
    let issuer = spawn_issuer().await;
    let clock = clock_now();
    let probe = issuer.guard(clock.clone()).await;
    let (a, pa) = token_and_principal(&issuer, &probe).await;
    let (b, pb) = token_and_principal(&issuer, &probe).await;
    let (c, pc) = token_and_principal(&issuer, &probe).await;
    let (d, pd) = token_and_principal(&issuer, &probe).await;
    let body = [
        event("10", &token_entry(10, &pa).to_string()),
        // An older entry arriving late: applied, but the position stays at 10.
        event("4", &token_entry(4, &pb).to_string()),
        // Ids that are not the entry's sequence number: skipped.
        event("abc", &token_entry(12, &pc).to_string()),
        event("13", &token_entry(12, &pc).to_string()),
        event("11", &token_entry(11, &pd).to_string()),
    ]
    .concat();
    let feed = spawn_hostile_feed(vec![
        Reply::sse(body, End::Close),
        Reply::sse("", End::Hang),
    ])
    .await;
    let (guard, handle) = guard_on(&issuer, &feed, clock).await;

    feed.wait_requests(2).await;
    assert_eq!(handle.last_seq(), Some(11));
    assert_eq!(feed.last_event_ids(), [None, Some("11".to_owned())]);
    assert!(!accepted(&guard, &a).await);
    assert!(
        !accepted(&guard, &b).await,
        "a late entry is still a revocation"
    );
    assert!(
        accepted(&guard, &c).await,
        "events whose id is not their seq are skipped"
    );
    assert!(!accepted(&guard, &d).await);
}

/// Non-200 answers and 200 with another content type are the feed being down: never
/// connected, nothing in their bodies applied, and past `feed_grace` every token is
/// introspected (and refused when that fails, fail-closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_is_not_an_event_stream_counts_as_down() {
    let issuer = spawn_issuer().await;
    let probe = issuer.guard(clock_now()).await;
    let (revoked, principal) = token_and_principal(&issuer, &probe).await;
    let (kept, _) = token_and_principal(&issuer, &probe).await;
    // Every body carries a well-formed entry revoking `revoked`: none may be applied.
    let body = event("1", &token_entry(1, &principal).to_string());
    let response = |status: &str, headers: &str| {
        let head = format!("HTTP/1.1 {status}\r\n{headers}connection: close\r\n\r\n");
        Reply::new(head + &body, End::Close)
    };
    let sse = "content-type: text/event-stream\r\n";
    let cases = [
        ("500", response("500 Internal Server Error", sse)),
        (
            "401",
            response(
                "401 Unauthorized",
                "www-authenticate: Basic realm=\"mandate\"\r\ncontent-type: application/json\r\n",
            ),
        ),
        ("204", response("204 No Content", sse)),
        (
            "200 text/html",
            response("200 OK", "content-type: text/html\r\n"),
        ),
        ("200 without a content type", response("200 OK", "")),
    ];
    let mut guards = Vec::new();
    for (reason, reply) in cases {
        let feed = spawn_hostile_feed(vec![reply]).await;
        let clock = clock_now();
        let (guard, handle) = guard_on(&issuer, &feed, clock.clone()).await;
        let started = Instant::now();
        while feed.request_count() < 2 {
            assert!(!handle.is_connected(), "{reason}: never connected");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{reason}: retried"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(handle.last_seq(), None, "{reason}");
        assert!(guard.revocations().is_empty(), "{reason}: nothing applied");
        assert!(
            accepted(&guard, &revoked).await,
            "{reason}: within the grace period the JWT suffices"
        );
        guards.push((reason, guard, handle, clock, feed));
    }

    issuer.revoke(&revoked).await;
    for (reason, guard, _, clock, _) in &guards {
        clock.advance(6);
        assert!(
            !accepted(guard, &revoked).await,
            "{reason}: past the grace period, introspection refuses the revoked token"
        );
        assert!(
            accepted(guard, &kept).await,
            "{reason}: introspection vouches"
        );
    }
    drop(issuer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (reason, guard, ..) in &guards {
        assert!(
            !accepted(guard, &kept).await,
            "{reason}: fail-closed without feed and introspection"
        );
    }
}

/// A feed that accepts and then says nothing is dropped after the read timeout, whether it
/// never answers the request or sends the headers and then falls silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_feed_is_dropped_after_the_read_timeout() {
    let issuer = spawn_issuer().await;
    for (reason, reply, connects) in [
        (
            "no response at all",
            Reply::new(Vec::new(), End::Hang),
            false,
        ),
        ("headers, then silence", Reply::sse("", End::Hang), true),
    ] {
        let feed = spawn_hostile_feed(vec![reply]).await;
        let (_guard, handle) = guard_on(&issuer, &feed, clock_now()).await;
        assert_eq!(
            handle.wait_connected(Duration::from_secs(1)).await,
            connects,
            "{reason}"
        );
        feed.wait_requests(2).await;
        assert!(
            feed.last_event_ids().iter().all(Option::is_none),
            "{reason}: nothing to resume from"
        );
    }
}

/// A feed that answers `200 text/event-stream` and hangs up at once, again and again, is down:
/// its brief connections must not keep restarting the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_hangs_up_at_once_does_not_postpone_the_fallback() {
    let issuer = spawn_issuer().await;
    let feed = spawn_hostile_feed(vec![Reply::sse("", End::Close)]).await;
    let clock = clock_now();
    let (guard, _handle) = guard_on(&issuer, &feed, clock.clone()).await;
    let (token, _) = token_and_principal(&issuer, &guard).await;
    issuer.revoke(&token).await;
    assert!(accepted(&guard, &token).await, "within the grace period");

    clock.advance(6);
    // Let the feed connect and hang up again after the clock moved.
    let seen = feed.request_count();
    feed.wait_requests(seen + 1).await;
    let started = Instant::now();
    while accepted(&guard, &token).await {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still accepted: the flapping feed kept the guard from introspecting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
