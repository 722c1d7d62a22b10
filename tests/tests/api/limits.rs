//! Limits: the daily quota under concurrency, windows and time zones, subscriptions, usage and
//! cost, rate limits, admin routes and the hourly job — on a clock the tests drive.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};
use shared::config::LimitsConfig;
use shared::domain::{ManualClock, RateLimits, Timestamp};

use crate::common::{TestApp, User};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn quota_only(daily_quota: u64) -> LimitsConfig {
    LimitsConfig {
        daily_quota,
        rate: RateLimits { append: 0, read: 0, other: 0, regenerate: 0 },
        ..LimitsConfig::default()
    }
}

/// An app whose clock stands at `now`. The tests' dates lie 400 years ahead (the calendar repeats
/// every 400 years, weekdays and leap days included): DynamoDB Local's TTL runs on the real clock,
/// and would remove counters whose `expires_at` a past test clock put behind the real now.
async fn app_at(limits: LimitsConfig, now: &str) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at(now)));
    (TestApp::with_limits(limits, clock.clone()).await, clock)
}

async fn say(app: &TestApp, user: &User, session: &str, role: &str) -> crate::common::Resp {
    app.post(user, &format!("/v1/sessions/{session}/messages"), json!({"role": role, "content": "hi"})).await
}

/// An admin's `PUT /v1/admin/users/{id}/subscription` for `user`.
pub(crate) async fn subscribe(app: &TestApp, admin: &User, user: &User, grant: Value) -> crate::common::Resp {
    let path = format!("/v1/admin/users/{}/subscription", user.id);
    app.call(Method::PUT, &path, Some(&admin.token), Some(grant)).await
}

/// A user message sent as a careful client sends it: with an idempotency key, retried while the
/// answer is `503` (a database attempt that timed out on a busy machine), until a final answer.
async fn say_until_answered(app: &TestApp, user: &User, session: &str, key: &str) -> crate::common::Resp {
    for _ in 0..20 {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri(format!("/v1/sessions/{session}/messages"))
            .header("authorization", format!("Bearer {}", user.token))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(axum::body::Body::from(json!({"role": "user", "content": "hi"}).to_string()))
            .unwrap();
        let response = app.send(request).await;
        if response.status != 503 {
            return response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("still 503 after 20 attempts");
}

#[tokio::test]
async fn exactly_the_quota_of_100_concurrent_user_appends_succeeds() {
    let (app, clock) = app_at(quota_only(50), "2426-11-21T10:00:00.000000Z").await;
    let other_container = app.sibling_with_clock(clock.clone());
    let user = app.user();
    let sessions = [
        app.session(&user, "a").await,
        app.session(&user, "b").await,
        app.session(&user, "c").await,
        app.session(&user, "d").await,
    ];
    let mut tasks = Vec::new();
    // Four sessions, two containers: every append races for the one quota counter. A lost race
    // is retried inside the append; a database attempt that times out on a busy machine is a 503
    // the client retries with its key. Exactly the quota is accepted, the rest is 429.
    for i in 0..100 {
        let target = if i % 2 == 0 { app.clone() } else { other_container.clone() };
        let (user, session) = (user.clone(), sessions[(i / 2) % 4].clone());
        let key = format!("quota-{i}");
        tasks.push(tokio::spawn(async move { say_until_answered(&target, &user, &session, &key).await }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for task in tasks {
        let response = task.await.unwrap();
        match response.status.as_u16() {
            // 200: a retry that found its append stored (the 503 came after the commit).
            200 | 201 => accepted += 1,
            429 => {
                let response = response.expect_error(429, "daily_limit_exceeded");
                assert_eq!(response.body["limits"]["remaining"], 0);
                assert_eq!(response.body["limits"]["total"], 50);
                assert_eq!(response.body["limits"]["resets_at"], "2426-11-22T00:00:00.000000Z");
                assert_eq!(response.header("retry-after"), Some("50400"));
                assert_eq!(response.header("x-ratelimit-remaining"), Some("0"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", response.body),
        }
    }
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!((accepted, refused), (50, 50));
    assert_eq!(
        limits["messages_limit"],
        json!({"total": 50, "used": 50, "remaining": 0, "resets_at": "2426-11-22T00:00:00.000000Z"})
    );
    let mut messages = 0;
    for session in &sessions {
        messages += app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body["message_count"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(messages, 50, "the log holds exactly the accepted messages");
    // Only user messages count: the assistant may still answer.
    say(&app, &user, &sessions[0], "assistant").await.expect(201);
}

#[tokio::test]
async fn headers_count_down_and_replays_cost_nothing() {
    let (app, _clock) = app_at(quota_only(3), "2426-11-21T10:00:00.000000Z").await;
    let user = app.user();
    let session = app.session(&user, "s").await;
    let first = say(&app, &user, &session, "user").await.expect(201);
    assert_eq!(first.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("2"));
    assert_eq!(
        first.header("x-ratelimit-reset"),
        Some(at("2426-11-22T00:00:00.000000Z").unix_seconds().to_string().as_str())
    );
    let assistant = say(&app, &user, &session, "assistant").await.expect(201);
    assert_eq!(assistant.header("x-ratelimit-remaining"), Some("2"));
    let keyed = json!({"role": "user", "content": "once", "dedupe_key": "k1"});
    let path = format!("/v1/sessions/{session}/messages");
    assert_eq!(app.post(&user, &path, keyed.clone()).await.expect(201).header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(app.post(&user, &path, keyed.clone()).await.expect(200).header("x-ratelimit-remaining"), Some("1"));
    say(&app, &user, &session, "user").await.expect(201);
    say(&app, &user, &session, "user").await.expect_error(429, "daily_limit_exceeded");
    // A retry of a stored append is still answered when the quota is used up.
    let replay = app.post(&user, &path, keyed).await.expect(200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let batch = json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]});
    app.post(&user, &format!("{path}/batch"), batch).await.expect_error(429, "daily_limit_exceeded");
    assert_eq!(app.get(&user, "/v1/limits").await.expect(200).body["messages_limit"]["used"], 3);
    assert_eq!(app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body["message_count"], 4);
}

#[tokio::test]
async fn a_new_window_starts_fresh_without_the_job() {
    let (app, clock) = app_at(quota_only(2), "2426-11-21T23:59:00.000000Z").await;
    let user = app.user();
    let session = app.session(&user, "s").await;
    say(&app, &user, &session, "user").await.expect(201);
    let batch = json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]});
    app.post(&user, &format!("/v1/sessions/{session}/messages/batch"), batch.clone())
        .await
        .expect_error(429, "daily_limit_exceeded");
    say(&app, &user, &session, "user").await.expect(201);
    say(&app, &user, &session, "user").await.expect_error(429, "daily_limit_exceeded");
    clock.set(at("2426-11-22T00:00:00.000000Z"));
    app.post(&user, &format!("/v1/sessions/{session}/messages/batch"), batch).await.expect(201);
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(
        limits["messages_limit"],
        json!({"total": 2, "used": 2, "remaining": 0, "resets_at": "2426-11-23T00:00:00.000000Z"})
    );
}

#[tokio::test]
async fn the_window_follows_the_users_time_zone() {
    let (app, clock) = app_at(quota_only(1), "2426-11-21T14:30:00.000000Z").await;
    let user = app.user();
    let session = app.session(&user, "s").await;
    say(&app, &user, &session, "user").await.expect(201);
    let tokyo = app.patch(&user, "/v1/limits/profile", json!({"timezone": "Asia/Tokyo"})).await.expect(200).body;
    assert_eq!(tokyo["timezone"], "Asia/Tokyo");
    // 14:30Z is 23:30 in Tokyo: that local day ends at 15:00Z. Windows are keyed by local date,
    // so the same date keeps its count: moving east cannot reopen a used-up day.
    assert_eq!(tokyo["messages_limit"]["resets_at"], "2426-11-21T15:00:00.000000Z");
    assert_eq!(tokyo["messages_limit"]["used"], 1);
    say(&app, &user, &session, "user").await.expect_error(429, "daily_limit_exceeded");
    clock.set(at("2426-11-21T15:00:00.000000Z"));
    let fresh = say(&app, &user, &session, "user").await.expect(201);
    assert_eq!(
        fresh.header("x-ratelimit-reset"),
        Some(at("2426-11-22T15:00:00.000000Z").unix_seconds().to_string().as_str())
    );
    // One change per 24 hours, so hopping zones cannot open windows.
    app.patch(&user, "/v1/limits/profile", json!({"timezone": "America/Los_Angeles"}))
        .await
        .expect_error(409, "conflict");
    app.patch(&user, "/v1/limits/profile", json!({"timezone": "Mars/Olympus"}))
        .await
        .expect_error(400, "invalid_input");
    app.patch(&user, "/v1/limits/profile", json!({"tz": "UTC"})).await.expect_error(400, "invalid_input");
    clock.advance(DAY);
    app.patch(&user, "/v1/limits/profile", json!({"timezone": "America/Los_Angeles"})).await.expect(200);
}

/// A user with a daily quota of 5 whose first append made this app's instance cache their quota
/// settings, and a subscription (no quota) granted to them since through another instance.
async fn granted_elsewhere() -> (TestApp, Arc<ManualClock>, User, String) {
    let (app, clock) = app_at(quota_only(5), "2426-11-21T10:00:00.000000Z").await;
    let (user, admin) = (app.user(), app.admin());
    let session = app.session(&user, "s").await;
    say(&app, &user, &session, "user").await.expect(201);
    let elsewhere = app.sibling_with_clock(clock.clone());
    let grant = json!({"plan": "pro", "start_at": "2426-11-21T00:00:00Z", "end_at": "2426-11-23T00:00:00Z"});
    subscribe(&elsewhere, &admin, &user, grant).await.expect(200);
    (app, clock, user, session)
}

/// An instance keeps a user's quota settings 30 s. After that, the next append that spends a unit
/// reads them again (a grant made elsewhere counts from then on); an append that spends none — an
/// assistant's message — reads nothing for them, only its headers depending on them.
#[tokio::test]
async fn cached_quota_settings_are_read_again_only_by_an_append_that_spends_a_unit() {
    let (app, clock, user, session) = granted_elsewhere().await;

    let appended = async |role: &str| {
        let before = app.state.store.dynamodb_calls();
        let response = say(&app, &user, &session, role).await.expect(201);
        (response.header("x-ratelimit-limit").map(str::to_owned), app.state.store.dynamodb_calls() - before)
    };
    assert_eq!(appended("user").await, (Some("5".to_owned()), 1), "within 30 s: the cached settings");
    clock.advance(Duration::from_secs(31));
    assert_eq!(appended("assistant").await, (Some("5".to_owned()), 1), "no read for an append that spends nothing");
    assert_eq!(appended("user").await, (Some("-1".to_owned()), 2), "read again: the grant counts");
    assert_eq!(appended("assistant").await, (Some("-1".to_owned()), 1));
}

/// A model's context reads the settings item anyway (for the profile): that read refreshes the
/// cached quota settings, so a user who keeps talking never waits for a settings read before a
/// turn's transaction, and a grant made elsewhere counts from the next turn.
#[tokio::test]
async fn the_contexts_read_refreshes_the_cached_quota_settings() {
    let (app, clock, user, session) = granted_elsewhere().await;

    clock.advance(Duration::from_secs(20));
    app.get(&user, &format!("/v1/sessions/{session}/context")).await.expect(200);
    clock.advance(Duration::from_secs(20));
    let before = app.state.store.dynamodb_calls();
    let response = say(&app, &user, &session, "user").await.expect(201);
    assert_eq!(
        (response.header("x-ratelimit-limit"), app.state.store.dynamodb_calls() - before),
        (Some("-1"), 1),
        "40 s after the append's own read, 20 s after the context's: the grant counts, read by the context"
    );
}

#[tokio::test]
async fn subscriptions_lift_the_quota_until_they_end() {
    let (app, clock) = app_at(quota_only(1), "2426-11-21T10:00:00.000000Z").await;
    let (user, admin) = (app.user(), app.admin());
    let session = app.session(&user, "s").await;
    say(&app, &user, &session, "user").await.expect(201);
    say(&app, &user, &session, "user").await.expect_error(429, "daily_limit_exceeded");
    let grant = json!({"plan": "pro", "start_at": "2426-11-21T00:00:00Z", "end_at": "2426-11-22T12:00:00+01:00"});
    let granted = subscribe(&app, &admin, &user, grant).await.expect(200).body;
    assert_eq!(granted["has_subscription"], true);
    assert_eq!(
        granted["subscription"],
        json!({"status": "active", "plan": "pro", "start_at": "2426-11-21T00:00:00.000000Z", "end_at": "2426-11-22T11:00:00.000000Z"})
    );
    assert_eq!(granted["messages_limit"]["total"], -1);
    // The appending instance may serve a profile up to 30 s old; a fresh instance sees the grant.
    let fresh = app.sibling_with_clock(clock.clone());
    for _ in 0..3 {
        let response = say(&fresh, &user, &session, "user").await.expect(201);
        assert_eq!(response.header("x-ratelimit-limit"), Some("-1"));
    }
    let mine = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(
        (mine["has_subscription"].clone(), mine["messages_limit"]["remaining"].clone()),
        (json!(true), json!(-1))
    );

    // Expiry needs no job: past end_at the quota applies again at once.
    clock.set(at("2426-11-22T11:00:00.000000Z"));
    let fresh = app.sibling_with_clock(clock.clone());
    say(&fresh, &user, &session, "user").await.expect(201);
    say(&fresh, &user, &session, "user").await.expect_error(429, "daily_limit_exceeded");
    let expired = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(
        (expired["has_subscription"].clone(), expired["subscription"]["status"].clone()),
        (json!(false), json!("expired"))
    );

    // The job records the expiry once.
    let first = app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    assert_eq!(first.subscriptions_expired, 1);
    assert!(first.finished);
    let again = app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    assert_eq!(again.subscriptions_expired, 0);

    let path = format!("/v1/admin/users/{}/subscription", user.id);
    app.call(Method::DELETE, &path, Some(&admin.token), None).await.expect(200);
    app.call(Method::DELETE, &path, Some(&admin.token), None).await.expect_error(404, "not_found");
}

#[tokio::test]
async fn admin_routes_are_admin_only() {
    let (app, _clock) = app_at(quota_only(5), "2426-11-21T10:00:00.000000Z").await;
    let (user, admin) = (app.user(), app.admin());
    let sub = format!("/v1/admin/users/{}/subscription", user.id);
    let grant = json!({"plan": "pro", "start_at": "2426-11-21T00:00:00Z", "end_at": "2426-12-21T00:00:00Z"});
    app.call(Method::PUT, &sub, Some(&user.token), Some(grant.clone())).await.expect_error(403, "forbidden");
    app.call(Method::DELETE, &sub, Some(&user.token), None).await.expect_error(403, "forbidden");
    app.get(&user, &format!("/v1/admin/users/{}/limits", user.id)).await.expect_error(403, "forbidden");
    app.call(Method::PUT, &sub, None, Some(grant.clone())).await.expect_error(401, "unauthorized");
    // Authorization before validation: a non-admin learns nothing about what a valid body is.
    for body in [json!({"plan": ""}), json!([1, 2]), json!("not an object")] {
        app.call(Method::PUT, &sub, Some(&user.token), Some(body)).await.expect_error(403, "forbidden");
    }
    app.call(Method::PUT, "/v1/admin/users/%20/subscription", Some(&user.token), Some(grant.clone()))
        .await
        .expect_error(403, "forbidden");
    assert_eq!(app.get(&user, "/v1/limits").await.expect(200).body["has_subscription"], false, "nothing changed");
    for (body, field) in [
        (json!({"plan": "pro", "start_at": "yesterday", "end_at": "2426-12-21T00:00:00Z"}), "start_at"),
        (json!({"plan": "pro", "start_at": "2426-12-21T00:00:00Z", "end_at": "2426-11-21T00:00:00Z"}), "end_at"),
        (json!({"plan": "", "start_at": "2426-11-21T00:00:00Z", "end_at": "2426-12-21T00:00:00Z"}), "plan"),
        (json!({"plan": "pro", "start_at": "2426-11-21T00:00:00Z"}), "end_at"),
    ] {
        let response =
            app.call(Method::PUT, &sub, Some(&admin.token), Some(body)).await.expect_error(400, "invalid_input");
        assert_eq!(response.body["field"], field);
    }
    app.call(Method::PUT, &sub, Some(&admin.token), Some(grant)).await.expect(200);
    let seen = app.get(&admin, &format!("/v1/admin/users/{}/limits", user.id)).await.expect(200).body;
    assert_eq!(seen["subscription"]["plan"], "pro");
    assert_eq!(
        app.get(&admin, "/v1/limits").await.expect(200).body["has_subscription"],
        false,
        "the admin's own limits"
    );
}

#[tokio::test]
async fn usage_and_cost_are_exact_sums() {
    let limits = LimitsConfig { prices: "gpt-4o-mini=0.15/0.60,big=3/15".parse().unwrap(), ..quota_only(100) };
    let (app, clock) = app_at(limits, "2426-11-20T12:00:00.000000Z").await;
    let (user, other) = (app.user(), app.user());
    let session = app.session(&user, "s").await;
    let path = format!("/v1/sessions/{session}/messages");
    let reply = |model: &str, input: u64, output: u64| json!({"role": "assistant", "content": "…", "usage": {"input_tokens": input, "output_tokens": output, "model": model}});
    say(&app, &user, &session, "user").await.expect(201);
    app.post(&user, &path, reply("gpt-4o-mini", 1_000, 500)).await.expect(201);
    app.post(&user, &path, reply("big", 10, 20)).await.expect(201);
    clock.advance(DAY);
    let batch = json!({"messages": [{"role": "user", "content": "q"}, reply("gpt-4o-mini", 2_000, 1_000), reply("unpriced", 7, 7)]});
    app.post(&user, &format!("{path}/batch"), batch).await.expect(201);
    let other_session = app.session(&other, "o").await;
    app.post(&other, &format!("/v1/sessions/{other_session}/messages"), reply("big", 1_000_000, 0)).await.expect(201);

    let usage = app.get(&user, "/v1/usage?from=2426-11-20&to=2426-11-21").await.expect(200).body;
    assert_eq!(
        usage["totals"],
        json!({"messages": 6, "input_tokens": 3017, "output_tokens": 1527, "cost_usd": "0.00168"})
    );
    assert_eq!(
        usage["daily"],
        json!([
            {"date": "2426-11-20", "messages": 3, "input_tokens": 1010, "output_tokens": 520, "cost_usd": "0.00078"},
            {"date": "2426-11-21", "messages": 3, "input_tokens": 2007, "output_tokens": 1007, "cost_usd": "0.0009"},
        ])
    );
    assert_eq!(
        usage["by_model"],
        json!([
            {"model": "big", "messages": 1, "input_tokens": 10, "output_tokens": 20, "cost_usd": "0.00033"},
            {"model": "gpt-4o-mini", "messages": 2, "input_tokens": 3000, "output_tokens": 1500, "cost_usd": "0.00135"},
            {"model": "unpriced", "messages": 1, "input_tokens": 7, "output_tokens": 7, "cost_usd": "0"},
        ])
    );
    let one_day = app.get(&user, "/v1/usage?from=2426-11-21&to=2426-11-21").await.expect(200).body;
    assert_eq!(one_day["totals"]["cost_usd"], "0.0009");
    let default_range = app.get(&user, "/v1/usage").await.expect(200).body;
    assert_eq!(default_range["totals"], usage["totals"]);
    for bad in ["from=2426-13-01", "from=2426-11-22&to=2426-11-21", "from=2424-01-01&to=2426-11-21", "to=tomorrow"] {
        app.get(&user, &format!("/v1/usage?{bad}")).await.expect_error(400, "invalid_input");
    }

    // The job closes yesterday: its cost is kept, and a second run changes nothing.
    clock.advance(DAY);
    let report = app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    // Three usage days: the user's 20th (moved out of the meter by the first append of the 21st)
    // and the 21st of both users, which the job moves out of their quiet meters itself.
    assert_eq!((report.usage_days_finalized, report.meters_closed), (3, 2), "{report:?}");
    let again = app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    assert_eq!((again.usage_days_finalized, again.meters_closed, again.subscriptions_expired), (0, 0, 0));
    let after = app.get(&user, "/v1/usage?from=2426-11-20&to=2426-11-21").await.expect(200).body;
    assert_eq!(after, usage, "finalising changes no number");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let limits = LimitsConfig {
        daily_quota: 1000,
        rate: RateLimits { append: 3, read: 2, other: 4, regenerate: 1 },
        ..LimitsConfig::default()
    };
    let (app, clock) = app_at(limits, "2426-11-21T10:00:15.000000Z").await;
    let user = app.user();
    let session = app.session(&user, "s").await; // other: 1
    // Every rate-counted success says where the caller stands, by name.
    for left in (0..3).rev() {
        let said = say(&app, &user, &session, "user").await.expect(201);
        assert_eq!(said.header("ratelimit-policy"), Some("\"append\";q=3;w=60"));
        assert_eq!(said.header("ratelimit"), Some(format!("\"append\";r={left};t=45").as_str()));
    }
    // The model's reply to those messages is never refused for the rate: it does not count.
    say(&app, &user, &session, "assistant").await.expect(201);
    let limited = say(&app, &user, &session, "user").await.expect_error(429, "rate_limit");
    assert_eq!(limited.body["retry_after"], 45);
    assert_eq!(limited.header("retry-after"), Some("45"));
    // The IETF fields say which limit it is; the quota's headers say nothing here.
    assert_eq!(limited.header("ratelimit-policy"), Some("\"append\";q=3;w=60"));
    assert_eq!(limited.header("ratelimit"), Some("\"append\";r=0;t=45"));
    assert!(limited.body["message"].as_str().unwrap().contains("append"), "{}", limited.body);
    let path = format!("/v1/sessions/{session}/messages");
    app.get(&user, &path).await.expect(200);
    app.get(&user, &format!("{path}/1")).await.expect(200);
    let read_limited = app.get(&user, &path).await.expect_error(429, "rate_limit");
    assert_eq!(read_limited.header("ratelimit-policy"), Some("\"read\";q=2;w=60"));
    for left in [2, 1, 0] {
        let read = app.get(&user, "/v1/limits").await.expect(200);
        assert_eq!(read.header("ratelimit-policy"), Some("\"other\";q=4;w=60"));
        assert_eq!(read.header("ratelimit"), Some(format!("\"other\";r={left};t=45").as_str()));
    }
    app.get(&user, "/v1/sessions").await.expect_error(429, "rate_limit");
    // Each user has their own budget; a new minute restores it.
    let other = app.user();
    app.get(&other, "/v1/sessions").await.expect(200);
    clock.advance(Duration::from_secs(45));
    say(&app, &user, &session, "user").await.expect(201);
    app.get(&user, &path).await.expect(200);
    app.get(&user, "/v1/sessions").await.expect(200);
    assert_eq!(app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body["message_count"], 5);
}

#[tokio::test]
async fn a_batch_over_the_quota_says_what_is_left_and_stores_nothing() {
    let (app, _clock) = app_at(quota_only(3), "2426-11-21T10:00:00.000000Z").await;
    let user = app.user();
    let session = app.session(&user, "s").await;
    let four: Vec<_> = (0..4).map(|i| json!({"role": "user", "content": format!("m{i}")})).collect();
    let refused = app.post(&user, &format!("/v1/sessions/{session}/messages/batch"), json!({"messages": four})).await;
    let refused = refused.expect_error(429, "daily_limit_exceeded");
    assert_eq!(refused.body["limits"]["remaining"], 3, "{}", refused.body);
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("3"));
    assert_eq!(refused.header("x-quota-remaining"), Some("3"));
    assert!(refused.body["message"].as_str().unwrap().contains("3 left"), "{}", refused.body);
    assert_eq!(app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body["message_count"], 0);
    // Exhausted: remaining 0 in body and headers alike.
    for _ in 0..3 {
        say(&app, &user, &session, "user").await.expect(201);
    }
    let exhausted = say(&app, &user, &session, "user").await.expect_error(429, "daily_limit_exceeded");
    assert_eq!(exhausted.body["limits"]["remaining"], 0);
    assert_eq!(exhausted.header("x-quota-remaining"), Some("0"));
    assert_eq!(exhausted.header("x-quota-limit"), Some("3"));
    assert!(exhausted.header("ratelimit").is_none(), "a quota refusal is not a rate refusal");
}

#[tokio::test]
async fn server_written_messages_never_spend_the_append_rate() {
    let limits = LimitsConfig {
        daily_quota: 1000,
        rate: RateLimits { append: 2, read: 0, other: 0, regenerate: 0 },
        ..LimitsConfig::default()
    };
    let (app, _clock) = app_at(limits, "2426-11-21T10:00:00.000000Z").await;
    let user = app.user();
    let session = app.session(&user, "s").await;
    say(&app, &user, &session, "user").await.expect(201);
    say(&app, &user, &session, "user").await.expect(201);
    for role in ["assistant", "tool", "assistant"] {
        say(&app, &user, &session, role).await.expect(201);
    }
    let batch = json!({"messages": [{"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"}]});
    app.post(&user, &format!("/v1/sessions/{session}/messages/batch"), batch).await.expect(201);
    say(&app, &user, &session, "user").await.expect_error(429, "rate_limit");
}

#[tokio::test]
async fn the_scheduled_event_runs_the_job_function() {
    let (app, _clock) = app_at(quota_only(5), "2426-11-21T10:00:00.000000Z").await;
    let path = kit::dynamodb_local::workspace_root().join("events/job/scheduled.json");
    let mut context = lambda_runtime::Context::default();
    context.deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let scheduled: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let report = job::handle(app.state.clone(), lambda_runtime::LambdaEvent::new(scheduled, context)).await.unwrap();
    assert_eq!(report["finished"], true);
    assert_eq!(report["subscriptions_expired"], 0);
}

/// The class each route is counted under, as the API documents it: appends in their own
/// transaction, the catalog never (it is served from memory), regenerate on its own limit, reads
/// of the log as reads, everything else as other.
fn documented_class(method: &str, path: &str) -> Option<&'static str> {
    let catalog = method == "GET" && (path.starts_with("/v1/characters") || path.starts_with("/v1/tags"));
    match (method, path) {
        ("POST", "/v1/sessions/{id}/messages" | "/v1/sessions/{id}/messages/batch" | "/v1/sessions/{id}/replies") => {
            Some("append")
        }
        ("GET", "/v1/characters/{id}/session") => Some("other"),
        _ if catalog => None,
        ("POST", "/v1/sessions/{id}/messages/{seq}/regenerate") => Some("regenerate"),
        ("GET", _) if path.starts_with("/v1/sessions/{id}/messages") => Some("read"),
        _ => Some("other"),
    }
}

#[tokio::test]
async fn every_route_is_counted_under_the_class_its_group_is_registered_under() {
    let limits = LimitsConfig {
        daily_quota: 1000,
        rate: RateLimits { append: 100, read: 100, other: 100, regenerate: 100 },
        ..LimitsConfig::default()
    };
    let (app, _clock) = app_at(limits, "2426-11-21T10:00:00.000000Z").await;
    let admin = app.admin();
    let session = app.session(&admin, "s").await;
    let document = dev::openapi::document();
    let routes = dev::openapi::routes(&document);
    assert!(routes.len() > 40, "{routes:?}");
    for route in routes {
        let (method, path) = route.split_once(' ').unwrap();
        let uri = path
            .replace("{id}", &session)
            .replace("{seq}", "1")
            .replace("{user_id}", &admin.id)
            .replace("{category}", "genre");
        let body = (method != "GET" && method != "DELETE").then(|| json!({"unknown_field": true}));
        let response = app.call(method.parse().unwrap(), &uri, Some(&admin.token), body).await;
        assert_ne!(response.status.as_u16(), 500, "{route}: {}", response.body);
        let policy = response.header("ratelimit-policy");
        match documented_class(method, path) {
            // An append refused before its write counts nothing; one that commits says "append".
            Some("append") => assert!(policy.is_none_or(|p| p.starts_with("\"append\"")), "{route}: {policy:?}"),
            Some(class) => {
                let wanted = format!("\"{class}\";q=100;w=60");
                assert_eq!(policy, Some(wanted.as_str()), "{route}");
            }
            None => assert_eq!(policy, None, "{route} is served from memory and never counted"),
        }
    }
}
