//! Faults: the database is cut off in the middle of a concurrent append load and comes back; the
//! database throttles every call. Nothing half-written may be visible, every answer must be a
//! success that was stored or a 503, and the same running app must recover on its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use shared::config::LimitsConfig;
use shared::domain::RateLimits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{TestApp, User};

const SESSIONS: usize = 4;
const APPENDS_PER_SESSION: usize = 30;

#[derive(Debug)]
struct Outcome {
    session: usize,
    key: String,
    status: u16,
}

async fn append(app: &TestApp, user: &User, session: &str, key: &str) -> crate::common::Resp {
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/sessions/{session}/messages"))
        .header("authorization", format!("Bearer {}", user.token))
        .header("idempotency-key", key)
        .body(axum::body::Body::from(json!({"role": "user", "content": format!("message {key}")}).to_string()))
        .unwrap();
    app.send(request).await
}

/// Between the app and DynamoDB: while the outage is on, every connection — open or new — is
/// cut, mid-request or not, as a dead database or network would. (Stopping DynamoDB Local itself
/// was the first way to do this; its shutdown can lose a write it has already acknowledged, which
/// real DynamoDB never does, and made the test fail at random.)
async fn cuttable_proxy(upstream: &str) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (outage, watching) = tokio::sync::watch::channel(false);
    let upstream = upstream.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let mut down = watching.clone();
            if *down.borrow() {
                continue;
            }
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = down.wait_for(|down| *down) => {}
                }
            });
        }
    });
    (endpoint, outage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_cut_off_mid_load_loses_nothing_and_the_app_recovers() {
    let (endpoint, outage) = cuttable_proxy(crate::common::endpoint()).await;
    let limits = LimitsConfig {
        daily_quota: 10_000,
        rate: RateLimits { append: 0, read: 0, other: 0, regenerate: 0 },
        ..LimitsConfig::default()
    };
    let app = Arc::new(TestApp::on_database(kit::dynamodb_local::client(&endpoint), limits).await);
    let user = app.user();
    let mut sessions = Vec::new();
    for index in 0..SESSIONS {
        sessions.push(app.session(&user, &format!("load {index}")).await);
    }

    // Concurrent appends on every session; the database is cut off once a third have been answered.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (index, session) in sessions.iter().enumerate() {
        let (app, user, session, answered) = (app.clone(), user.clone(), session.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..APPENDS_PER_SESSION {
                let key = format!("s{index}-m{n}");
                let response = append(&app, &user, &session, &key).await;
                answered.fetch_add(1, Ordering::SeqCst);
                outcomes.push(Outcome { session: index, key, status: response.status.as_u16() });
            }
            outcomes
        }));
    }
    while answered.load(Ordering::SeqCst) < SESSIONS * APPENDS_PER_SESSION / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    outage.send_replace(true);
    while answered.load(Ordering::SeqCst) < SESSIONS * APPENDS_PER_SESSION * 2 / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    outage.send_replace(false);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap());
    }

    // Every answer was a success or a 503, and the outage was seen.
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for outcome in &outcomes {
        *by_status.entry(outcome.status).or_default() += 1;
    }
    assert!(by_status.keys().all(|status| [201, 503].contains(status)), "statuses: {by_status:?}");
    assert!(by_status.get(&503).copied().unwrap_or(0) > 0, "the outage was not noticed: {by_status:?}");
    assert!(by_status.get(&201).copied().unwrap_or(0) > 0, "{by_status:?}");
    eprintln!("during the outage: {by_status:?}");

    // The same app, not restarted, serves again. A client retrying its 503s with the same keys
    // gets each message exactly once: 201 if it was not stored, 200 (replayed) if it was.
    let mut replayed = 0;
    for outcome in outcomes.iter().filter(|outcome| outcome.status == 503) {
        let response = append(&app, &user, &sessions[outcome.session], &outcome.key).await;
        assert!([200, 201].contains(&response.status.as_u16()), "retry of {}: {}", outcome.key, response.body);
        replayed += usize::from(response.status == 200);
    }
    eprintln!("retried after recovery: {} (of which {replayed} had been stored before the 503)", by_status[&503]);

    // Every log is gapless, holds each key once, and agrees with its session summary; the quota
    // counted exactly the stored user messages.
    let mut stored = 0;
    for (index, session) in sessions.iter().enumerate() {
        let log = app.get(&user, &format!("/v1/sessions/{session}/messages?limit=200")).await.expect(200).body;
        let data = log["data"].as_array().unwrap();
        let seqs: Vec<u64> = data.iter().map(|message| message["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=APPENDS_PER_SESSION as u64).collect::<Vec<_>>(), "session {index}: seqs {seqs:?}");
        let mut contents: Vec<&str> = data.iter().map(|message| message["content"].as_str().unwrap()).collect();
        contents.sort_unstable();
        contents.dedup();
        assert_eq!(contents.len(), APPENDS_PER_SESSION, "session {index}: a message was stored twice");
        let summary = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
        assert_eq!(summary["message_count"], APPENDS_PER_SESSION, "session {index}");
        assert_eq!(summary["last_seq"], APPENDS_PER_SESSION, "session {index}");
        stored += data.len();
    }
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(limits["messages_limit"]["used"], stored as u64, "{limits}");
    assert_eq!(stored, SESSIONS * APPENDS_PER_SESSION);
}

#[tokio::test]
async fn throttling_is_retried_a_bounded_number_of_times_then_503() {
    let app = TestApp::new().await;
    let (endpoint, requests) = fault_proxy(crate::common::endpoint(), None, (400, THROTTLED)).await;
    let throttled = app.through(&endpoint);
    let user = throttled.user();
    let response = throttled.post(&user, "/v1/sessions", json!({"title": "x"})).await;
    let response = response.expect_error(503, "service_unavailable");
    assert_eq!(response.header("retry-after"), Some("1"));
    let attempts = requests.load(Ordering::SeqCst);
    // The SDK's standard retry policy: 3 attempts per call, with backoff between them.
    assert!((2..=3).contains(&attempts), "{attempts} attempts for one create");
    let body: &Value = &response.body;
    assert!(!body.to_string().contains("Throttling"), "503 bodies stay opaque: {body}");
}

/// Reads one HTTP/1.1 message (headers and a `content-length` body) from `stream`.
async fn read_message(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = message.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&message[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if message.len() >= end + 4 + length {
                return Some(message);
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => message.extend_from_slice(&chunk[..read]),
        }
    }
}

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
/// What DynamoDB says when another transaction holds an item.
const CONFLICT: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled [TransactionConflict]","CancellationReasons":[{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]}"#;

/// A fault-injecting endpoint: requests whose `X-Amz-Target` names `refused` (every request when
/// it is `None`) get `error` (a status and a body) as DynamoDB would send it; the rest are
/// forwarded to `upstream`. Counts the refused requests.
pub(crate) async fn fault_proxy(
    upstream: &str,
    refused: Option<&'static str>,
    (status, error): (u16, &'static str),
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let upstream = upstream.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let (counter, upstream) = (counter.clone(), upstream.clone());
            tokio::spawn(async move {
                while let Some(request) = read_message(&mut client).await {
                    let target = refused.map(|operation| format!("DynamoDB_20120810.{operation}"));
                    let refuse = target.is_none_or(|target| String::from_utf8_lossy(&request).contains(&target));
                    let response = if refuse {
                        counter.fetch_add(1, Ordering::SeqCst);
                        format!(
                            "HTTP/1.1 {status} Fault\r\ncontent-type: application/x-amz-json-1.0\r\n\
                             x-amzn-requestid: fault\r\ncontent-length: {}\r\n\r\n{error}",
                            error.len()
                        )
                        .into_bytes()
                    } else {
                        let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                        if server.write_all(&request).await.is_err() {
                            return;
                        }
                        let Some(response) = read_message(&mut server).await else { return };
                        response
                    };
                    if client.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, count)
}

#[tokio::test]
async fn endless_transaction_conflicts_end_in_503_within_the_budget_and_write_nothing() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "contended").await;
    let (endpoint, refused) = fault_proxy(crate::common::endpoint(), Some("TransactWriteItems"), (400, CONFLICT)).await;
    let contended = app.through(&endpoint);
    let response = append(&contended, &user, &session, "contended-1").await;
    let response = response.expect_error(503, "service_unavailable");
    let attempts = refused.load(Ordering::SeqCst);
    eprintln!("transaction attempts before giving up: {attempts}");
    assert!(attempts > 1, "a conflict was not retried");
    assert!(attempts <= 200, "{attempts} attempts: the retry budget is unbounded");
    assert!(response.header("retry-after").is_some());
    // Reads through the proxy still work, and nothing was written.
    let summary = contended.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    assert_eq!(summary["message_count"], 0);
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["data"], json!([]));
}

/// DynamoDB's own failures — an `InternalServerError`, any other 5xx (DynamoDB Local's SQLite
/// errors arrive as such), a transaction cancelled for throttling — are retryable: `503` with
/// `Retry-After`, never `500`, and nothing is written.
#[tokio::test]
async fn database_failures_are_503_with_retry_after_never_500() {
    const INTERNAL: &str =
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#;
    const LOCAL_FAILURE: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalFailure","message":"The request processing has failed because of an unknown error, exception or failure."}"#;
    const THROTTLED_IN_TRANSACTION: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled [None, ThrottlingError]","CancellationReasons":[{"Code":"None"},{"Code":"ThrottlingError","Message":"Throughput exceeds the current capacity"}]}"#;
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "failing").await;
    for (index, fault) in
        [(500, INTERNAL), (500, LOCAL_FAILURE), (400, THROTTLED_IN_TRANSACTION)].into_iter().enumerate()
    {
        let (endpoint, _) = fault_proxy(crate::common::endpoint(), Some("TransactWriteItems"), fault).await;
        let failing = app.through(&endpoint);
        let response = append(&failing, &user, &session, &format!("failing-{index}")).await;
        let response = response.expect_error(503, "service_unavailable");
        assert!(response.header("retry-after").is_some(), "{fault:?}");
    }
    let summary = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    assert_eq!(summary["message_count"], 0);
}
