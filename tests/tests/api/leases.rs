//! Replies that are never stuck: the time cap, and the lease that lets whoever meets a reply
//! whose generator is gone end it. A generator "gone" is simulated here by a second instance
//! whose clock stands past the lease (the first one's generator is alive and renewing, and must
//! then stop without overwriting the end); `crash.rs` kills a real server process instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::config::LlmConfig;
use shared::domain::{Clock, ManualClock, SystemClock};

use crate::common::{TestApp, User, quota};
use crate::replies::scripted_llm;

/// The scripted provider with a short lease, and a provider timeout long enough for `hang` to
/// keep its generator alive.
async fn leased() -> LlmConfig {
    let mut llm = scripted_llm().await;
    llm.lease_secs = 3;
    llm.timeout_secs = 60;
    llm
}

/// Another instance on the same tables whose clock stands a minute ahead: every lease it reads
/// has passed.
fn a_minute_later(app: &TestApp) -> TestApp {
    let ahead = SystemClock.now().plus(Duration::from_secs(60));
    app.sibling_with_clock(Arc::new(ManualClock::new(ahead)))
}

/// Starts a JSON reply in the background; its answer arrives once the generator ends.
fn start_reply(app: &TestApp, user: &User, session: &str, model: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let (app, user, path) = (app.clone(), user.clone(), format!("/v1/sessions/{session}/replies"));
    let body = json!({"content": "Talk for a long while.", "model": model});
    tokio::spawn(async move {
        let answer = app.post(&user, &path, body).await;
        (answer.status.as_u16(), answer.body)
    })
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(20), "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A reader that meets a streaming reply whose lease passed ends it `incomplete` with the text
/// of its last checkpoint; the generator that was still running stops at its next write and
/// leaves that end as it is; the turn keeps its quota unit (the reply had text); regenerate and
/// a new reply work.
#[tokio::test]
async fn a_reply_whose_lease_passed_is_ended_by_the_next_reader_with_its_text() {
    let app = TestApp::with_llm(leased().await, quota(5)).await;
    let later = a_minute_later(&app);
    let user = app.user();
    let session = app.session(&user, "lease").await;
    let caller = start_reply(&app, &user, &session, "slow");
    let message = format!("/v1/sessions/{session}/messages/2");
    until("a checkpoint", async || {
        app.get(&user, &message).await.body["content"].as_str().is_some_and(|text| !text.is_empty())
    })
    .await;

    let ended = later.get(&user, &message).await.expect(200).body;
    assert_eq!((ended["status"].as_str(), ended["stop_reason"].as_str()), (Some("incomplete"), Some("interrupted")));
    assert!(!ended["content"].as_str().unwrap().is_empty(), "the checkpoint's text is kept: {ended}");
    assert!(ended["error"].is_null(), "{ended}");

    let (status, answer) =
        tokio::time::timeout(Duration::from_secs(20), caller).await.expect("the caller is answered").unwrap();
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["assistant_message"], ended, "the stopped generator answers with the stored end");
    assert_eq!(app.get(&user, &message).await.expect(200).body, ended, "and did not overwrite it");
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(limits["messages_limit"]["used"], 1, "a reply with text keeps its unit: {limits}");

    let regenerated = later.post(&user, &format!("{message}/regenerate"), json!({"model": "quirky"})).await.expect(201);
    assert_eq!(regenerated.body["assistant_message"]["variant"], 2);
    let replies = format!("/v1/sessions/{session}/replies");
    let next = later.post(&user, &replies, json!({"content": "and now?", "model": "quirky"})).await.expect(201);
    assert_eq!(next.body["assistant_message"]["seq"], 4);
}

/// A reply whose generator is gone before any text, and that no reader meets, is ended by the
/// hourly job: `failed`, with the quota unit given back; the job's report counts it, and a
/// second run finds nothing to do.
#[tokio::test]
async fn the_hourly_job_ends_a_reply_without_text_and_gives_the_quota_back() {
    let app = TestApp::with_llm(leased().await, quota(5)).await;
    let later = a_minute_later(&app);
    let user = app.user();
    let session = app.session(&user, "lease job").await;
    let caller = start_reply(&app, &user, &session, "hang");
    let message = format!("/v1/sessions/{session}/messages/2");
    until("the reply's start", async || app.get(&user, &message).await.status == 200).await;
    assert_eq!(app.get(&user, "/v1/limits").await.body["messages_limit"]["used"], 1);

    let report = later.state.chat.end_interrupted_replies(Duration::from_secs(30)).await.unwrap();
    assert_eq!((report.replies_interrupted, report.finished), (1, true), "{report:?}");
    let ended = app.get(&user, &message).await.expect(200).body;
    assert_eq!((ended["status"].as_str(), ended["stop_reason"].as_str()), (Some("failed"), Some("interrupted")));
    assert_eq!(ended["error"]["code"], "llm_error");
    assert_eq!(ended["error"]["retryable"], true);
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(limits["messages_limit"]["used"], 0, "a reply without text gives its unit back: {limits}");

    let (status, answer) =
        tokio::time::timeout(Duration::from_secs(20), caller).await.expect("the caller is answered").unwrap();
    assert_eq!((status, answer["error"].as_str()), (502, Some("llm_error")), "{answer}");
    let again = later.state.chat.end_interrupted_replies(Duration::from_secs(30)).await.unwrap();
    assert_eq!(again.replies_interrupted, 0, "an ended reply leaves the job's index: {again:?}");
    assert_eq!(app.get(&user, &message).await.body, ended);
}

/// A live reply is not taken for dead: its generator renews the lease while the model is silent,
/// so a reader on the same clock leaves it streaming past the lease's length.
#[tokio::test]
async fn a_live_generator_keeps_its_lease_while_the_model_is_silent() {
    let app = TestApp::with_llm(leased().await, quota(5)).await;
    let user = app.user();
    let session = app.session(&user, "lease kept").await;
    let _caller = start_reply(&app, &user, &session, "hang");
    let message = format!("/v1/sessions/{session}/messages/2");
    until("the reply's start", async || app.get(&user, &message).await.status == 200).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let other = app.sibling();
    assert_eq!(other.get(&user, &message).await.expect(200).body["status"], "streaming", "5 s past a 3 s lease");
    let report = other.state.chat.end_interrupted_replies(Duration::from_secs(30)).await.unwrap();
    assert_eq!(report.replies_interrupted, 0);
    other.post(&user, &format!("{message}/cancel"), json!({})).await.expect(200);
}

/// Every reply has a time cap: a model that would talk for 30 s is cut at
/// `LLM_REPLY_TIMEOUT_SECS`; the reply ends `incomplete` with `stop_reason: "timeout"` and its
/// text, and the JSON caller is answered then.
#[tokio::test]
async fn a_reply_that_reaches_its_time_cap_ends_incomplete_with_its_text() {
    let mut llm = leased().await;
    llm.reply_timeout_secs = 2;
    let app = TestApp::with_llm(llm, quota(5)).await;
    let user = app.user();
    let session = app.session(&user, "cap").await;
    let started = Instant::now();
    let body = json!({"content": "Talk for a long while.", "model": "slow"});
    let answer = app.post(&user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201).body;
    assert!(started.elapsed() < Duration::from_secs(20), "answered at the cap, not when the model was done");
    let reply = &answer["assistant_message"];
    assert_eq!((reply["status"].as_str(), reply["stop_reason"].as_str()), (Some("incomplete"), Some("timeout")));
    assert!(!reply["content"].as_str().unwrap().is_empty(), "{reply}");
    let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(&stored, reply);
}

/// The quota has one shape wherever it is reported: a reply's answer, a 429, `GET /v1/limits`.
#[tokio::test]
async fn the_quota_has_one_shape_wherever_it_is_reported() {
    let app = TestApp::with_llm(scripted_llm().await, quota(1)).await;
    let user = app.user();
    let session = app.session(&user, "one shape").await;
    let replies = format!("/v1/sessions/{session}/replies");
    let turn = app.post(&user, &replies, json!({"content": "hi"})).await.expect(201).body;
    let refused =
        app.post(&user, &replies, json!({"content": "again"})).await.expect_error(429, "daily_limit_exceeded");
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    for reported in [&turn["limits"], &refused.body["limits"], &limits["messages_limit"]] {
        let keys: Vec<&str> = reported.as_object().expect("a quota object").keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{reported}");
        for key in ["total", "used", "remaining", "resets_at"] {
            assert!(keys.contains(&key), "{key} missing in {reported}");
        }
        assert_eq!((&reported["total"], &reported["used"], &reported["remaining"]), (&json!(1), &json!(1), &json!(0)));
    }
    assert_eq!(turn["limits"], limits["messages_limit"]);
}

/// With `LLM_CONCURRENCY`, replies beyond the model's slots wait a little for one (as many as
/// there are slots), and the rest are refused up front: 503 `llm_busy` with `Retry-After`,
/// nothing stored, no quota spent. The one that waited runs when the slot frees, and its time
/// cap counts from its request: the wait is inside the cap, not added to it.
#[tokio::test]
async fn replies_beyond_the_models_slots_wait_in_a_short_line_or_are_refused_up_front() {
    let mut llm = leased().await;
    llm.reply_timeout_secs = 8;
    llm.concurrency = Some(1);
    let app = TestApp::with_llm(llm, quota(5)).await;
    let user = app.user();
    let first = app.session(&user, "first").await;
    let running = start_reply(&app, &user, &first, "slow");
    let app_ref = &app;
    let (user_ref, first_ref) = (&user, &first);
    until("the first reply streams", async || {
        let stored = app_ref.get(user_ref, &format!("/v1/sessions/{first_ref}/messages/2")).await;
        stored.status == 200 && stored.body["status"] == "streaming"
    })
    .await;

    // Two more at once: one takes the place in line, the other is refused at once.
    let (second, third) = (app.session(&user, "second").await, app.session(&user, "third").await);
    let started = Instant::now();
    let mut waiting = vec![start_reply(&app, &user, &second, "slow"), start_reply(&app, &user, &third, "slow")];
    let (refused, index, rest) = futures::future::select_all(waiting.drain(..)).await;
    let (status, body) = refused.unwrap();
    assert_eq!(status, 503, "the first answer is the refusal: {body}");
    assert_eq!((body["error"].as_str(), body["retry_after"].as_u64()), (Some("llm_busy"), Some(5)), "{body}");
    let (refused_session, admitted_session) = if index == 0 { (&second, &third) } else { (&third, &second) };

    // The slot frees 4 s in: the one in line runs, to its cap counted from its request (8 s
    // after it, not 8 s after the slot freed).
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(started.elapsed())).await;
    app.post(&user, &format!("/v1/sessions/{first}/messages/2/cancel"), json!({})).await.expect(200);
    let (status, admitted) = rest.into_iter().next().unwrap().await.unwrap();
    assert_eq!(status, 201, "{admitted}");
    assert_eq!(admitted["assistant_message"]["stop_reason"], "timeout", "it ran, to its cap");
    let answered = started.elapsed();
    assert!(answered < Duration::from_secs(11), "the wait was inside the cap: answered after {answered:?}");
    let (status, _) = running.await.unwrap();
    assert_eq!(status, 201);

    // The refused turn left nothing, and the quota counts the two that ran.
    let empty = app.get(&user, &format!("/v1/sessions/{refused_session}")).await.expect(200).body;
    assert_eq!(empty["message_count"], 0, "{empty}");
    let ran = app.get(&user, &format!("/v1/sessions/{admitted_session}")).await.expect(200).body;
    assert_eq!(ran["message_count"], 2, "{ran}");
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(limits["messages_limit"]["used"], 2, "{limits}");
}
