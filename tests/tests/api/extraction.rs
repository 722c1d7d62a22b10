//! Memories the model writes itself (#30), against the local model (llama.cpp + SmolLM2-135M) and
//! the tables' streams as the dev server follows them: a reply that ends starts its session's
//! extraction off the reply's path; what the model says is checked, consolidated and stored with
//! its source; a deleted extracted memory is never extracted again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dev::streams::Followers;
use serde_json::{Value, json};
use shared::domain::{
    DayUsage, Importance, MemoryContent, MemoryScope, MemorySource, MemoryType, NewMemory, Seq, SessionId, UserId,
    fingerprint,
};
use shared::llm::{Model, ModelError, OpenAi};
use shared::memory::{Extracted, ExtractionConfig, ExtractionError, ExtractionQueue, Extractor};
use shared::realtime::Realtime;
use shared::store::{ExtractionBatch, ExtractionWrite};

use crate::common::{MEMORY_TIMEOUT, TestApp, User, endpoint, local_llm, unlimited};

/// The tables' streams followed, ended replies handed to extraction (as `scripts/dev.sh` does).
async fn follow(app: &TestApp) -> Followers {
    let sdk = kit::dynamodb_local::sdk_config(endpoint());
    let extraction = app.state.extractor.clone().map(ExtractionQueue::new);
    assert!(extraction.is_some(), "a model is configured and MEMORY_EXTRACTION defaults to auto");
    let realtime = Realtime::new(app.state.clone(), Arc::new(dev::hub::LocalHub::default()));
    dev::streams::follow(&sdk, None, &app.config.tables, realtime, extraction).await.unwrap()
}

/// Waits (at most two of the model's time limits: a call that timed out and its retry) until
/// extraction has read the session through `seq`; the time it took.
async fn extracted_through(app: &TestApp, user: &User, session: &str, seq: u64) -> Duration {
    let started = Instant::now();
    let user = UserId::parse(&user.id).unwrap();
    let session: SessionId = session.parse().unwrap();
    loop {
        let mark = app.state.store.extraction_mark(&user, session).await.unwrap();
        if mark.is_some_and(|mark| mark >= Seq::new(seq).unwrap()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < MEMORY_TIMEOUT * 2, "extraction did not reach seq {seq}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A turn: the user's message and the reply; the reply's seq.
async fn turn(app: &TestApp, user: &User, session: &str, content: &str) -> u64 {
    let answer =
        app.post(user, &format!("/v1/sessions/{session}/replies"), json!({"content": content})).await.expect(201);
    answer.body["assistant_message"]["seq"].as_u64().unwrap()
}

/// Every live memory of the user and the session, extracted from the session.
async fn extracted(app: &TestApp, user: &User, session: &str) -> Vec<Value> {
    let listed =
        app.get(user, &format!("/v1/memories?session_id={session}&include_global=true&limit=100")).await.expect(200);
    listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|memory| memory["source"]["session_id"] == session)
        .cloned()
        .collect()
}

const FACTS: [&str; 2] = [
    "Hi! My name is Anna, I am 29 and I live in Berlin with my cat Felix. I love green tea and I hate loud music.",
    "Привет! Меня зовут Ольга, я живу в Москве и работаю врачом. Я очень люблю собак и зелёный чай.",
];

fn ids(user: &User, session: &str) -> (UserId, SessionId) {
    (UserId::parse(&user.id).unwrap(), session.parse().unwrap())
}

/// Checks what every extracted memory must be, whatever the model said: a valid type and
/// importance, its source the session's range ending at the reply, grounded in the user's words,
/// no fact twice.
fn assert_valid(memories: &[Value], session: &str, seq: u64, said: &str) {
    let said = fingerprint(said);
    for memory in memories {
        assert_eq!(memory["origin"], "extracted", "{memory}");
        assert_eq!(memory["source"]["session_id"], session);
        assert!(["fact", "preference", "emotion", "relationship"].contains(&memory["memory_type"].as_str().unwrap()));
        assert!((1..=10).contains(&memory["importance"].as_u64().unwrap()), "{memory}");
        let (from, to) = (memory["source"]["from_seq"].as_u64().unwrap(), memory["source"]["to_seq"].as_u64().unwrap());
        assert!(from >= 1 && from <= to && to <= seq, "source {from}..{to} for a reply at {seq}");
        assert!(memory["superseded_by"].is_null());
        let grounded = fingerprint(memory["content"].as_str().unwrap())
            .split(' ')
            .any(|word| word.chars().count() >= 4 && said.split(' ').any(|own| own == word));
        assert!(grounded, "not grounded in the user's words: {memory}");
    }
    let prints: std::collections::HashSet<_> =
        memories.iter().map(|memory| fingerprint(memory["content"].as_str().unwrap())).collect();
    assert_eq!(prints.len(), memories.len(), "no fact twice");
}

/// The real model reads each ended reply of a conversation — in English and in Russian — off the
/// reply's path: the reply answers first, extraction reaches its seq within the bound, its calls
/// and tokens are in `/v1/usage` as the `memory` kind (not messages, not the quota), and whatever
/// it stored obeys the rules. (What it finds is the model's quality: the evaluation set measures
/// it, see BENCHMARKS.md.)
#[tokio::test]
async fn english_and_russian_turns_are_read_off_the_reply_path_into_valid_memories() {
    let app = TestApp::with_llm(local_llm(), crate::common::quota(10)).await;
    let _followers = follow(&app).await;
    let user = app.user();
    let mut waits = Vec::new();
    for facts in FACTS {
        let session = app.session(&user, "facts").await;
        let seq = turn(&app, &user, &session, facts).await;
        let (user_id, session_id) = ids(&user, &session);
        let mark = app.state.store.extraction_mark(&user_id, session_id).await.unwrap();
        assert!(mark.is_none_or(|mark| mark.get() < seq), "the reply answered before extraction read it");
        waits.push(extracted_through(&app, &user, &session, seq).await);
        assert_valid(&extracted(&app, &user, &session).await, &session, seq, facts);
    }
    let usage = app.get(&user, "/v1/usage").await.expect(200).body;
    let memory = usage["by_kind"].as_array().unwrap().iter().find(|kind| kind["kind"] == "memory").cloned();
    let memory = memory.unwrap_or_else(|| panic!("no memory kind in {usage}"));
    assert_eq!(memory["messages"], 2, "one extraction call per ended reply: {usage}");
    assert!(memory["input_tokens"].as_u64().unwrap() > 100 && memory["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(usage["totals"]["messages"], 4, "2 user messages + 2 replies; extraction calls are not messages");
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(limits["messages_limit"]["used"], 2, "extraction spends no quota: {limits}");
    eprintln!("extraction reached the reply's seq after {waits:?}");
}

/// Deleting an extracted memory leaves a tombstone of its fingerprint (a user's own memory leaves
/// none); extraction skips that fact from then on — in any case or punctuation — and erasure
/// removes the tombstones with everything else.
#[tokio::test]
async fn deleting_an_extracted_memory_leaves_a_tombstone_that_erasure_removes() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "tombstones").await;
    app.append(&user, &session, "user", "I live in Berlin").await;
    let (user_id, session_id) = ids(&user, &session);
    let store = &app.state.store;
    let seq = Seq::new(1).unwrap();
    let new = |text: &str| NewMemory {
        scope: MemoryScope::Global,
        memory_type: MemoryType::Fact,
        content: MemoryContent::parse(text.to_owned()).unwrap(),
        importance: Importance::DEFAULT,
        source: Some(MemorySource { session_id, from_seq: seq, to_seq: seq }),
    };
    let batch = ExtractionBatch { through: seq, adds: vec![new("The user lives in Berlin.")], supersedes: vec![] };
    let ExtractionWrite::Stored(added) =
        store.store_extraction(&user_id, session_id, batch, &DayUsage::default()).await.unwrap()
    else {
        panic!("not stored")
    };
    let own = app
        .post(&user, "/v1/memories", json!({"content": "The user likes tea", "memory_type": "preference"}))
        .await
        .expect(201)
        .body;
    assert_eq!(own["origin"], "user");
    assert!(own["source"].is_null());
    app.delete(&user, &format!("/v1/memories/{}", added[0].id)).await.expect(200);
    app.delete(&user, &format!("/v1/memories/{}", own["id"].as_str().unwrap())).await.expect(200);
    let asked = ["the user lives in berlin".to_owned(), "the user likes tea".to_owned()];
    let found = store.tombstoned(&user_id, &asked).await.unwrap();
    assert_eq!(found, [asked[0].clone()].into(), "only the extracted memory left a tombstone");
    // A later extraction that proposes it again skips it (the rule is unit-tested in
    // `consolidate`; here the stored tombstone is what it reads).
    let again = fingerprint("The user LIVES in Berlin!");
    assert!(store.tombstoned(&user_id, &[again]).await.unwrap().len() == 1);
    app.delete(&user, "/v1/me").await.expect(200);
    assert!(store.tombstoned(&user_id, &asked).await.unwrap().is_empty(), "erasure removes tombstones too");
    assert_eq!(store.extraction_mark(&user_id, session_id).await.unwrap(), None, "and the marks");
}

/// A batch delivered twice is stored once; a superseded memory leaves lists and the context but
/// stays readable by id; a full batch is all or nothing.
#[tokio::test]
async fn a_redelivered_batch_writes_nothing_and_a_correction_supersedes() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "batches").await;
    app.append(&user, &session, "user", "I live in Berlin").await;
    app.append(&user, &session, "user", "Actually I moved to Munich").await;
    let (user_id, session_id) = ids(&user, &session);
    let store = &app.state.store;
    let (one, two) = (Seq::new(1).unwrap(), Seq::new(2).unwrap());
    let new = |text: &str, to: Seq, scope: MemoryScope| NewMemory {
        scope,
        memory_type: MemoryType::Fact,
        content: MemoryContent::parse(text.to_owned()).unwrap(),
        importance: Importance::DEFAULT,
        source: Some(MemorySource { session_id, from_seq: one, to_seq: to }),
    };
    let first = ExtractionBatch {
        through: one,
        adds: vec![
            new("The user lives in Berlin", one, MemoryScope::Global),
            new("Berlin story", one, MemoryScope::Session(session_id)),
        ],
        supersedes: vec![],
    };
    let usage = DayUsage::of_extraction("m", 100, 10);
    let ExtractionWrite::Stored(berlin) =
        store.store_extraction(&user_id, session_id, first.clone(), &usage).await.unwrap()
    else {
        panic!("not stored")
    };
    assert_eq!(
        store.store_extraction(&user_id, session_id, first, &usage).await.unwrap(),
        ExtractionWrite::AlreadyDone
    );
    let listed =
        app.get(&user, &format!("/v1/memories?session_id={session}&include_global=true")).await.expect(200).body;
    assert_eq!(listed["total"], 2, "stored once: {listed}");
    let correction = ExtractionBatch {
        through: two,
        adds: vec![new("The user lives in Munich", two, MemoryScope::Global)],
        supersedes: vec![(berlin[0].id, MemoryScope::Global, 0)],
    };
    let ExtractionWrite::Stored(munich) =
        store.store_extraction(&user_id, session_id, correction, &usage).await.unwrap()
    else {
        panic!("not stored")
    };
    let listed = app.get(&user, "/v1/memories").await.expect(200).body;
    let texts: Vec<_> = listed["data"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!((texts, listed["total"].as_u64()), (vec!["The user lives in Munich"], Some(1)));
    let old = app.get(&user, &format!("/v1/memories/{}", berlin[0].id)).await.expect(200).body;
    assert_eq!(old["superseded_by"], munich[0].id.to_string());
    let context = app.get(&user, &format!("/v1/sessions/{session}/context")).await.expect(200).body.to_string();
    assert!(context.contains("Munich") && !context.contains("lives in Berlin"), "{context}");
    // Usage: three batches' tokens, two of them stored (the redelivery wrote nothing).
    let report = app.get(&user, "/v1/usage").await.expect(200).body;
    let memory = report["by_kind"].as_array().unwrap().iter().find(|kind| kind["kind"] == "memory").unwrap().clone();
    assert_eq!((memory["messages"].as_u64(), memory["input_tokens"].as_u64()), (Some(2), Some(200)), "{report}");
    // The supersede of a memory gone meanwhile leaves the new one standing alone.
    app.delete(&user, &format!("/v1/memories/{}", munich[0].id)).await.expect(200);
    let three = Seq::new(3).unwrap();
    app.append(&user, &session, "user", "Hamburg now").await;
    let late = ExtractionBatch {
        through: three,
        adds: vec![new("The user lives in Hamburg", three, MemoryScope::Global)],
        supersedes: vec![(munich[0].id, MemoryScope::Global, 0)],
    };
    let ExtractionWrite::Stored(hamburg) =
        store.store_extraction(&user_id, session_id, late, &DayUsage::default()).await.unwrap()
    else {
        panic!("not stored")
    };
    assert_eq!(hamburg.len(), 1);
}

/// Faults: an answer that is not the memories' shape (the scripted model echoes the prompt back)
/// moves the mark and stores nothing, and the next turn is read; a model that never answers is a
/// retryable timeout that stores nothing and leaves the mark; a throttled write stores nothing
/// (one transaction) and the same turns succeed once the database is back.
#[tokio::test]
async fn malformed_answers_timeouts_and_throttled_writes_leave_nothing_half_written() {
    let app = TestApp::with_llm(local_llm(), unlimited()).await;
    let user = app.user();
    let session = app.session(&user, "faults").await;
    app.append(&user, &session, "user", "My name is Anna and I live in Berlin").await;
    app.append(&user, &session, "assistant", "Nice to meet you, Anna!").await;
    let (user_id, session_id) = ids(&user, &session);
    let scripted = crate::scripted_model::start().await;
    let model: Arc<dyn Model> = Arc::new(OpenAi::new(&scripted, None, Duration::from_secs(5)).unwrap());
    let mut config = ExtractionConfig::new("echo");
    config.timeout = Duration::from_secs(2);
    let echo = Extractor::new(app.state.store.clone(), model.clone(), config.clone());
    let outcome = echo.extract(&user_id, session_id, Seq::new(2).unwrap()).await.unwrap();
    assert_eq!(outcome, Extracted::Unreadable);
    assert_eq!(app.state.store.extraction_mark(&user_id, session_id).await.unwrap(), Seq::new(2));
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 0);

    app.append(&user, &session, "user", "I also have a cat called Felix").await;
    let hang = Extractor::new(app.state.store.clone(), model, ExtractionConfig { model: "hang".into(), ..config });
    let error = hang.extract(&user_id, session_id, Seq::new(3).unwrap()).await.unwrap_err();
    assert!(matches!(error, ExtractionError::Model(ModelError::Timeout)) && error.retryable(), "{error}");
    assert_eq!(app.state.store.extraction_mark(&user_id, session_id).await.unwrap(), Seq::new(2), "left for a retry");

    let (endpoint, _) =
        crate::faults::fault_proxy(crate::common::endpoint(), Some("TransactWriteItems"), (400, THROTTLED)).await;
    let throttled = app.through(&endpoint);
    let real = throttled.state.extractor.clone().unwrap();
    let error = real.extract(&user_id, session_id, Seq::new(3).unwrap()).await.unwrap_err();
    assert!(matches!(error, ExtractionError::Store(_)) && error.retryable(), "{error}");
    assert_eq!(app.state.store.extraction_mark(&user_id, session_id).await.unwrap(), Seq::new(2));
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 0);
    // The database is back: the next delivery of the same turn reads it.
    let outcome =
        app.state.extractor.clone().unwrap().extract(&user_id, session_id, Seq::new(3).unwrap()).await.unwrap();
    assert!(matches!(outcome, Extracted::Stored { .. } | Extracted::Unreadable), "{outcome:?}");
    assert_eq!(app.state.store.extraction_mark(&user_id, session_id).await.unwrap(), Seq::new(3));
}

/// A session whose `settings.memory` is `manual` is not read (no model call, nothing stored) and
/// its mark moves on, so turning it to `auto` later reads only what follows; a bad mode is a 400.
#[tokio::test]
async fn a_manual_session_is_not_read() {
    let app = TestApp::with_llm(local_llm(), unlimited()).await;
    let user = app.user();
    let refused = app.post(&user, "/v1/sessions", json!({"settings": {"memory": "sometimes"}})).await;
    assert_eq!(refused.expect_error(400, "invalid_input").body["field"], "settings.memory");
    let session = app.post(&user, "/v1/sessions", json!({"settings": {"memory": "manual"}})).await.expect(201).body;
    let session = session["id"].as_str().unwrap().to_owned();
    app.append(&user, &session, "user", "My name is Anna and I live in Berlin").await;
    let (user_id, session_id) = ids(&user, &session);
    let extractor = app.state.extractor.clone().unwrap();
    let outcome = extractor.extract(&user_id, session_id, Seq::new(1).unwrap()).await.unwrap();
    assert_eq!(outcome, Extracted::Manual);
    assert_eq!(app.state.store.extraction_mark(&user_id, session_id).await.unwrap(), Seq::new(1));
    let usage = app.get(&user, "/v1/usage").await.expect(200).body;
    assert_eq!(usage["by_kind"], json!([]), "no model call: {usage}");
    app.patch(&user, &format!("/v1/sessions/{session}"), json!({"settings": {"memory": "auto"}})).await.expect(200);
    app.append(&user, &session, "user", "I have a cat called Felix").await;
    let outcome = extractor.extract(&user_id, session_id, Seq::new(2).unwrap()).await.unwrap();
    assert!(matches!(outcome, Extracted::Stored { .. } | Extracted::Unreadable), "{outcome:?}");
    let usage = app.get(&user, "/v1/usage").await.expect(200).body;
    assert_eq!(usage["by_kind"][0]["kind"], "memory", "read once it is auto: {usage}");
}

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled [None, ThrottlingError]","CancellationReasons":[{"Code":"None"},{"Code":"ThrottlingError","Message":"Throughput exceeds the current capacity"}]}"#;

/// Edits propagate: editing or deleting a source message, forget-recent and reset take the
/// extracted memories read from what they changed (in the change's own transaction); new-scene
/// keeps them; memories read from other messages and sessions stay; the counts stay exact.
#[tokio::test]
async fn changing_a_source_takes_its_memories_and_new_scene_keeps_them() {
    let app = TestApp::new().await;
    let user = app.user();
    let store = &app.state.store;
    let session = app.session(&user, "sources").await;
    let other = app.session(&user, "another").await;
    for index in 1..=6 {
        app.append(&user, &session, "user", &format!("fact number {index}")).await;
    }
    app.append(&user, &other, "user", "a fact elsewhere").await;
    let (user_id, session_id) = ids(&user, &session);
    let (_, other_id) = ids(&user, &other);
    let memory = |text: &str, from: u64, to: u64, scope: MemoryScope, source: SessionId| NewMemory {
        scope,
        memory_type: MemoryType::Fact,
        content: MemoryContent::parse(text.to_owned()).unwrap(),
        importance: Importance::DEFAULT,
        source: Some(MemorySource {
            session_id: source,
            from_seq: Seq::new(from).unwrap(),
            to_seq: Seq::new(to).unwrap(),
        }),
    };
    let batch = ExtractionBatch {
        through: Seq::new(6).unwrap(),
        adds: vec![
            memory("read from one and two", 1, 2, MemoryScope::Global, session_id),
            memory("read from three and four", 3, 4, MemoryScope::Global, session_id),
            memory("read from five", 5, 5, MemoryScope::Session(session_id), session_id),
            memory("read from six", 6, 6, MemoryScope::Global, session_id),
        ],
        supersedes: vec![],
    };
    let ExtractionWrite::Stored(stored) =
        store.store_extraction(&user_id, session_id, batch, &DayUsage::default()).await.unwrap()
    else {
        panic!("not stored")
    };
    let elsewhere = ExtractionBatch {
        through: Seq::new(1).unwrap(),
        adds: vec![memory("read elsewhere", 1, 1, MemoryScope::Global, other_id)],
        supersedes: vec![],
    };
    let ExtractionWrite::Stored(kept) =
        store.store_extraction(&user_id, other_id, elsewhere, &DayUsage::default()).await.unwrap()
    else {
        panic!("not stored")
    };
    let live = |ids: &[usize]| -> Vec<String> { ids.iter().map(|&index| stored[index].id.to_string()).collect() };
    let expect = |mut wanted: Vec<String>| {
        wanted.push(kept[0].id.to_string());
        wanted.sort();
        let total = wanted.len() as u64;
        (wanted, total)
    };
    app.patch(&user, &format!("/v1/sessions/{session}/messages/1"), json!({"content": "fact number one, edited"}))
        .await
        .expect(200);
    assert_eq!(
        listed(&app, &user, &session).await,
        expect(live(&[1, 2, 3])),
        "the edit took the memory read from 1..2"
    );
    app.get(&user, &format!("/v1/memories/{}", stored[0].id)).await.expect(404);
    app.delete(&user, &format!("/v1/sessions/{session}/messages/3")).await.expect(204);
    assert_eq!(listed(&app, &user, &session).await, expect(live(&[2, 3])), "the delete took the one read from 3..4");
    app.post(&user, &format!("/v1/sessions/{session}/forget-recent"), json!({"count": 1})).await.expect(200);
    assert_eq!(listed(&app, &user, &session).await, expect(live(&[2])), "forget-recent took the one read from 6");
    app.post(&user, &format!("/v1/sessions/{session}/new-scene"), json!({"messages_to_keep": 0})).await.expect(200);
    assert_eq!(listed(&app, &user, &session).await, expect(live(&[2])), "new-scene keeps memories");
    // A user memory never goes with a message, and a deleted message's seq is not reused.
    let own = app.post(&user, "/v1/memories", json!({"content": "mine", "memory_type": "fact"})).await.expect(201).body;
    app.post(&user, &format!("/v1/sessions/{other}/reset"), json!({})).await.expect(200);
    let after = app.get(&user, "/v1/memories?limit=100").await.expect(200).body;
    let ids: Vec<&str> = after["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [own["id"].as_str().unwrap()],
        "the reset took the memory read from its session; the user's own stays"
    );
    assert_eq!(after["total"], 1);
    assert_eq!(listed(&app, &user, &session).await.1, 2, "the first session's own memory and the user's");
}

/// The ids (sorted) and total of the session's and the user's memories.
async fn listed(app: &TestApp, user: &User, session: &str) -> (Vec<String>, u64) {
    let body = app
        .get(user, &format!("/v1/memories?session_id={session}&include_global=true&limit=100"))
        .await
        .expect(200)
        .body;
    let mut ids: Vec<String> =
        body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    (ids, body["total"].as_u64().unwrap())
}

/// A 60-message conversation with a recent window of 8 gets a summary from the local model: it
/// covers messages before the window, leaves at most one step between itself and the window, and
/// the context shows it as its own part. Deleting a message it covers takes it (in the delete's
/// transaction) until it is rebuilt; editing a message after it leaves it; a new scene drops it.
#[tokio::test]
async fn a_long_session_gets_a_summary_that_follows_its_log() {
    let mut llm = local_llm();
    llm.context_tokens = 2048;
    let app = TestApp::with_llm(llm, unlimited()).await;
    let user = app.user();
    let session = app.session(&user, "a long trip").await;
    let (user_id, session_id) = ids(&user, &session);
    for chunk in 0..3 {
        let messages: Vec<Value> = (1..=20)
            .map(|index| {
                let n = chunk * 20 + index;
                let role = if n % 2 == 1 { "user" } else { "assistant" };
                json!({"role": role, "content": format!(
                    "Message {n}: we sailed further along the coast, past the lighthouse and the old harbour, talking about the map."
                )})
            })
            .collect();
        app.post(&user, &format!("/v1/sessions/{session}/messages/batch"), json!({"messages": messages}))
            .await
            .expect(201);
    }
    app.get(&user, &format!("/v1/sessions/{session}/summary")).await.expect_error(404, "not_found");
    let extractor = app.state.extractor.clone().unwrap();
    let done = extractor.summarize(&user_id, session_id).await.unwrap();
    assert!(done.calls >= 1 && !done.raced, "{done:?}");
    let usage = app.get(&user, "/v1/usage").await.expect(200).body;
    let memory = usage["by_kind"].as_array().unwrap().iter().find(|kind| kind["kind"] == "memory").cloned().unwrap();
    assert_eq!(memory["messages"], done.calls as u64, "each summary call in the memory kind: {usage}");
    assert!(memory["input_tokens"].as_u64().unwrap() > 500, "{usage}");
    let summary = app.get(&user, &format!("/v1/sessions/{session}/summary")).await.expect(200).body;
    let through = summary["through_seq"].as_u64().unwrap();
    assert!(!summary["text"].as_str().unwrap().trim().is_empty() && summary["tokens"].as_u64().unwrap() > 0);
    // The window is seqs 53..=60; what lies between the summary and it is at most one step.
    assert!((1..53).contains(&through), "through_seq {through}");
    let per_message = shared::domain::estimate_tokens(
        "Message 10: we sailed further along the coast, past the lighthouse and the old harbour, talking about the map.",
    );
    assert!((52 - through) * per_message <= 1000, "a gap of {} messages", 52 - through);
    let context = app.get(&user, &format!("/v1/sessions/{session}/context")).await.expect(200).body;
    assert_eq!(context["summary"]["through_seq"], through);
    let part = context["parts"].as_array().unwrap().iter().find(|part| part["part"] == "summary").unwrap().clone();
    assert_eq!((part["included"].as_bool(), part["items"].as_u64()), (Some(true), Some(1)), "{part}");
    assert_eq!(extractor.summarize(&user_id, session_id).await.unwrap().calls, 0, "nothing more to do");

    app.patch(&user, &format!("/v1/sessions/{session}/messages/59"), json!({"content": "an edit after the summary"}))
        .await
        .expect(200);
    assert_eq!(
        app.get(&user, &format!("/v1/sessions/{session}/summary")).await.expect(200).body["through_seq"],
        through
    );
    app.delete(&user, &format!("/v1/sessions/{session}/messages/3")).await.expect(204);
    app.get(&user, &format!("/v1/sessions/{session}/summary")).await.expect_error(404, "not_found");
    let context = app.get(&user, &format!("/v1/sessions/{session}/context")).await.expect(200).body;
    assert!(context["summary"].is_null(), "the context no longer tells of the deleted message");
    assert!(extractor.summarize(&user_id, session_id).await.unwrap().calls >= 1, "rebuilt");
    app.get(&user, &format!("/v1/sessions/{session}/summary")).await.expect(200);
    app.post(&user, &format!("/v1/sessions/{session}/new-scene"), json!({"messages_to_keep": 0})).await.expect(200);
    app.get(&user, &format!("/v1/sessions/{session}/summary")).await.expect_error(404, "not_found");
    assert!(app.get(&user, &format!("/v1/sessions/{session}/context")).await.expect(200).body["summary"].is_null());
}
