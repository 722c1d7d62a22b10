//! The change feed: `GET /v1/sessions/{id}/changes?after_rev=` returns exactly what changed in a
//! session's log after a revision, in revision order, deleted messages as tombstones.

use serde_json::{Value, json};

use crate::common::{TestApp, User};

/// `(type, rev, seq)` of each change; `seq` is the range's end for `cleared`.
fn entries(body: &Value) -> Vec<(String, u64, u64)> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| {
            let kind = change["type"].as_str().unwrap().to_owned();
            let seq = match kind.as_str() {
                "message" => change["message"]["seq"].as_u64(),
                "cleared" => change["through_seq"].as_u64(),
                _ => change["seq"].as_u64(),
            };
            (kind, change["rev"].as_u64().unwrap(), seq.unwrap())
        })
        .collect()
}

async fn changes(app: &TestApp, user: &User, session: &str, query: &str) -> Value {
    app.get(user, &format!("/v1/sessions/{session}/changes?{query}")).await.expect(200).body
}

fn change(kind: &str, rev: u64, seq: u64) -> (String, u64, u64) {
    (kind.to_owned(), rev, seq)
}

/// Appends, an edit and a delete, each at its own revision: the feed after any revision a client
/// holds returns exactly the changes after it, each message as it is now.
#[tokio::test]
async fn the_feed_returns_exactly_the_changes_after_a_revision() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "feed").await;
    let base = format!("/v1/sessions/{session}");
    for (index, text) in ["one", "two", "three"].iter().enumerate() {
        let message = app.append(&user, &session, "user", text).await;
        assert_eq!(message["rev"], index as u64 + 1, "each append is a revision: {message}");
    }
    let edited = app.patch(&user, &format!("{base}/messages/2"), json!({"content": "two, edited"})).await.expect(200);
    assert_eq!(edited.body["rev"], 4);
    app.delete(&user, &format!("{base}/messages/1")).await.expect(204);
    let summary = app.get(&user, &base).await.expect(200).body;
    assert_eq!(summary["rev"], 5, "the session shows the revision a client starts from");

    let all = changes(&app, &user, &session, "after_rev=0").await;
    assert_eq!(entries(&all), [change("message", 3, 3), change("message", 4, 2), change("deleted", 5, 1)]);
    assert_eq!(all["data"][1]["message"]["content"], "two, edited", "the message as it is now");
    assert_eq!((all["has_more"].as_bool(), all["next_after_rev"].as_u64()), (Some(false), Some(5)));
    let missed = changes(&app, &user, &session, "after_rev=3").await;
    assert_eq!(entries(&missed), [change("message", 4, 2), change("deleted", 5, 1)]);
    let none = changes(&app, &user, &session, "after_rev=5").await;
    assert_eq!((entries(&none).len(), none["next_after_rev"].as_u64()), (0, Some(5)));

    // Paging: a page of one, then the rest from where it ended.
    let first = changes(&app, &user, &session, "after_rev=0&limit=1").await;
    assert_eq!(entries(&first), [change("message", 3, 3)]);
    assert_eq!((first["has_more"].as_bool(), first["next_after_rev"].as_u64()), (Some(true), Some(3)));
    let rest = changes(&app, &user, &session, "after_rev=3&limit=2").await;
    assert_eq!(entries(&rest), entries(&missed));
}

/// Forget-recent deletes several messages at one revision: a page never splits it. New-scene and
/// reset hide a range: one `cleared` change stands for every message they hid.
#[tokio::test]
async fn one_revision_stays_whole_and_hidden_ranges_are_one_change() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "ranges").await;
    let base = format!("/v1/sessions/{session}");
    let batch = json!({"messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}
    ]});
    let stored = app.post(&user, &format!("{base}/messages/batch"), batch).await.expect(201).body;
    assert!(stored["data"].as_array().unwrap().iter().all(|m| m["rev"] == 1), "a batch is one revision");
    app.post(&user, &format!("{base}/forget-recent"), json!({"count": 2})).await.expect(200);
    let page = changes(&app, &user, &session, "after_rev=1&limit=1").await;
    assert_eq!(entries(&page), [change("deleted", 2, 2), change("deleted", 2, 3)], "both, though the limit is 1");
    assert_eq!((page["has_more"].as_bool(), page["next_after_rev"].as_u64()), (Some(false), Some(2)));

    app.append(&user, &session, "user", "d").await;
    app.post(&user, &format!("{base}/new-scene"), json!({"messages_to_keep": 1})).await.expect(200);
    let scene = changes(&app, &user, &session, "after_rev=2").await;
    assert_eq!(entries(&scene), [change("message", 3, 4), change("cleared", 4, 1)]);
    app.post(&user, &format!("{base}/reset"), json!({})).await.expect(200);
    app.append(&user, &session, "user", "after the reset").await;
    let reset = changes(&app, &user, &session, "after_rev=2").await;
    assert_eq!(entries(&reset), [change("cleared", 5, 4), change("message", 6, 5)], "the hidden seq 4 is in the range");
    assert_eq!(reset["next_after_rev"], 6);
}

/// The feed of another user's session is a 404, like the session; bad parameters are 400.
#[tokio::test]
async fn the_feed_is_private_and_checks_its_parameters() {
    let app = TestApp::new().await;
    let (owner, other) = (app.user(), app.user());
    let session = app.session(&owner, "mine").await;
    app.append(&owner, &session, "user", "secret").await;
    let path = format!("/v1/sessions/{session}/changes");
    app.get(&other, &path).await.expect_error(404, "not_found");
    app.get(&owner, &format!("{path}?after_rev=-1")).await.expect_error(400, "invalid_input");
    app.get(&owner, &format!("{path}?limit=0")).await.expect_error(400, "invalid_input");
    app.get(&owner, &format!("{path}?since=1")).await.expect_error(400, "invalid_input");
    assert_eq!(entries(&changes(&app, &owner, &session, "").await).len(), 1);
}

/// A client away for hundreds of appends pages through all of them in revision order, each
/// message once and as it is now; one back after a few appends reads just those. (Creations are
/// found by seq from the log, changes after them from the index: both sides are exercised.)
#[tokio::test]
async fn a_long_absence_pages_through_every_change_once() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "long").await;
    let base = format!("/v1/sessions/{session}");
    for batch in 0..30 {
        let messages: Vec<_> =
            (0..20).map(|index| json!({"role": "user", "content": format!("m{}", batch * 20 + index + 1)})).collect();
        app.post(&user, &format!("{base}/messages/batch"), json!({"messages": messages})).await.expect(201);
    }
    app.patch(&user, &format!("{base}/messages/3"), json!({"content": "three, edited"})).await.expect(200);
    app.delete(&user, &format!("{base}/messages/590")).await.expect(204);

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = changes(&app, &user, &session, &format!("after_rev={after}&limit=100")).await;
        let revs: Vec<u64> = page["data"].as_array().unwrap().iter().map(|c| c["rev"].as_u64().unwrap()).collect();
        assert!(revs.windows(2).all(|pair| pair[0] <= pair[1]), "revision order: {revs:?}");
        assert!(revs.iter().all(|rev| *rev > after), "only after the revision asked for");
        seen.extend(entries(&page));
        after = page["next_after_rev"].as_u64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(after, 32);
    assert_eq!(seen.len(), 600, "every message once");
    let mut seqs: Vec<u64> = seen.iter().map(|(_, _, seq)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 600);
    assert!(seen.contains(&change("message", 31, 3)), "the edit at its own revision");
    assert!(seen.contains(&change("deleted", 32, 590)));
    assert!(seen.contains(&change("message", 1, 1)) && seen.contains(&change("message", 30, 600)));

    let recent = changes(&app, &user, &session, "after_rev=29").await;
    let expected: Vec<_> = (581..=600)
        .filter(|seq| *seq != 590)
        .map(|seq| change("message", 30, seq))
        .chain([change("message", 31, 3), change("deleted", 32, 590)])
        .collect();
    assert_eq!(entries(&recent), expected);
    assert_eq!(recent["data"][19]["message"]["content"], "three, edited");
}
