//! The character catalog at scale: N characters written through the admin route, then listings
//! (filters, sorts, pages), searches in three scripts and lookups by id through the local HTTP
//! server, answered from the instance's in-memory snapshot.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::BoxError;
use crate::server::{Api, admin_token, token};
use crate::stats::Percentiles;

/// Admin writes in flight while the catalog is filled.
const WRITERS: usize = 16;
/// The target: warm list and search p99 (handler time), milliseconds.
pub const TARGET_P99_MS: f64 = 5.0;

const CATEGORIES: [&str; 4] = ["theme", "personality", "setting", "style"];
const GENRES: [&str; 8] = ["fantasy", "scifi", "romance", "horror", "slice-of-life", "mystery", "history", "comedy"];
const LATIN: [&str; 12] =
    ["moon", "witch", "ship", "captain", "café", "detective", "garden", "storm", "violin", "pirate", "doctor", "river"];
const CYRILLIC: [&str; 8] = ["ёлка", "чай", "звезда", "море", "лес", "кот", "зима", "сказка"];
const CJK: [&str; 8] = ["雪", "桜", "月", "海", "森", "猫", "星", "風"];

pub struct Report {
    pub characters: usize,
    /// Filling the catalog through `POST /v1/admin/characters`.
    pub fill: Duration,
    /// The first read after the writes: the snapshot is loaded (one version read and a scan).
    pub load: Duration,
    pub load_calls: u32,
    pub cases: Vec<Case>,
}

/// One kind of catalog read, repeated.
pub struct Case {
    pub name: &'static str,
    pub path: String,
    /// What the first answer's `total` said (the matches, before paging).
    pub total: u64,
    pub client: Percentiles,
    pub handler: Percentiles,
    /// DynamoDB calls over every request of the case.
    pub calls: u32,
}

impl Report {
    /// The slowest p99 handler time among the listings and searches.
    pub fn worst_p99(&self) -> Option<(&'static str, f64)> {
        self.cases
            .iter()
            .filter(|case| case.name != "get by id")
            .map(|case| (case.name, case.handler.at(99.0)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn calls(&self) -> u32 {
        self.cases.iter().map(|case| case.calls).sum()
    }
}

/// The `index`-th character: names and descriptions in Latin, Cyrillic or CJK script, a genre,
/// three tags of four categories, one in ten adults only, one in five premium, one in fifty inactive.
fn character(index: usize) -> Value {
    let pick = |words: &[&'static str], salt: usize| words[(index * 7 + salt * 13) % words.len()];
    let (name, description) = match index % 3 {
        0 => (
            format!("{} {index}", pick(&LATIN, 0)),
            format!("A {} who keeps a {} by the {}", pick(&LATIN, 1), pick(&LATIN, 2), pick(&LATIN, 3)),
        ),
        1 => (
            format!("{} {index}", pick(&CYRILLIC, 0)),
            format!("{} и {}, {}", pick(&CYRILLIC, 1), pick(&CYRILLIC, 2), pick(&CYRILLIC, 3)),
        ),
        _ => (
            format!("{}{} {index}", pick(&CJK, 0), pick(&CJK, 1)),
            format!("{}と{}の{}", pick(&CJK, 2), pick(&CJK, 3), pick(&CJK, 4)),
        ),
    };
    let tags: Vec<Value> = (0..3)
        .map(|slot| {
            let category = CATEGORIES[(index + slot) % CATEGORIES.len()];
            json!({"category": category, "name": format!("tag{}", (index * 3 + slot * 17) % 40)})
        })
        .collect();
    json!({
        "id": format!("c{index:05}"),
        "name": name,
        "description": description,
        "description_long": format!("{description}. {}", "Long story. ".repeat(20)),
        "greeting": "Hello.",
        "genre": GENRES[index % GENRES.len()],
        "content_rating": if index.is_multiple_of(10) { "nsfw" } else { "sfw" },
        "access_type": if index.is_multiple_of(5) { "premium" } else { "free" },
        "tags": tags,
        "system_prompt": "You are a character in a story.",
        "is_active": index % 50 != 1,
    })
}

pub async fn run(api: &Api, characters: usize, requests: usize) -> Result<Report, BoxError> {
    let admin = admin_token("catalog-admin")?;
    let started = Instant::now();
    futures::stream::iter(0..characters)
        .map(|index| {
            let admin = &admin;
            async move { api.call(admin, "POST", "/v1/admin/characters", Some(&character(index))).await.map(|_| ()) }
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    let fill = started.elapsed();
    api.discard_served();

    let reader = token("catalog-reader")?;
    let started = Instant::now();
    api.call(&reader, "GET", "/v1/characters", None).await?;
    let load = started.elapsed();
    let load_calls = api.take_served().await?.iter().map(|served| served.dynamodb.calls).sum();

    let cases = [
        ("list: popular, first page", "/v1/characters".to_owned()),
        (
            "list: genre + rating + access + tag, newest",
            "/v1/characters?genre=fantasy&rating=sfw&access_type=free&tags=tag8&sort=new".to_owned(),
        ),
        ("list: recommended, offset 5,000", "/v1/characters?sort=recommended&limit=50&offset=5000".to_owned()),
        ("search: Latin, accent-insensitive (`cafe`)", "/v1/characters/search?q=cafe".to_owned()),
        ("search: Cyrillic (`елка`)", "/v1/characters/search?q=%D0%B5%D0%BB%D0%BA%D0%B0".to_owned()),
        ("search: CJK (`雪`)", "/v1/characters/search?q=%E9%9B%AA".to_owned()),
        ("search: no match", "/v1/characters/search?q=zzzz".to_owned()),
        ("get by id", format!("/v1/characters/c{:05}", characters / 2)),
    ];
    let mut report = Vec::with_capacity(cases.len());
    for (name, path) in cases {
        let first = api.call(&reader, "GET", &path, None).await?;
        let total = first.body["total"].as_u64().unwrap_or(u64::from(first.body.get("id").is_some()));
        api.discard_served();
        let mut client = Vec::with_capacity(requests);
        for _ in 0..requests {
            client.push(api.call(&reader, "GET", &path, None).await?.latency);
        }
        let served = api.take_served().await?;
        report.push(Case {
            name,
            path,
            total,
            client: Percentiles::new(client),
            handler: Percentiles::new(served.iter().map(|served| served.handler)),
            calls: served.iter().map(|served| served.dynamodb.calls).sum(),
        });
    }
    Ok(Report { characters, fill, load, load_calls, cases: report })
}

pub fn markdown(report: &Report, out: &mut String) {
    let _ = writeln!(out, "## Character catalog ({} characters)\n", report.characters);
    let _ = writeln!(
        out,
        "{} characters (three scripts, 8 genres, 40 tags, one in ten adults only, one in five premium, one in fifty \
         inactive) written through `POST /v1/admin/characters` ({WRITERS} at a time) in {:.1} s; the first read after \
         them loaded the snapshot in {:.0} ms with {} DynamoDB calls (the version item, then a 4-segment parallel scan at 1 MB a page). Then \
         each read below ran {} times in a row through the local server; handler time is the server's (routing, \
         auth, the snapshot query, JSON), client time adds HTTP on loopback.\n",
        report.characters,
        report.fill.as_secs_f64(),
        report.load.as_secs_f64() * 1000.0,
        report.load_calls,
        report.cases.first().map_or(0, |case| case.client.len()),
    );
    let _ = writeln!(
        out,
        "| read | matches | handler p50 / p99 (ms) | client p50 / p99 (ms) | DynamoDB calls |\n|---|---|---|---|---|"
    );
    for case in &report.cases {
        let _ = writeln!(
            out,
            "| {} `{}` | {} | {:.3} / {:.3} | {:.3} / {:.3} | {} |",
            case.name,
            case.path,
            case.total,
            case.handler.at(50.0),
            case.handler.at(99.0),
            case.client.at(50.0),
            case.client.at(99.0),
            case.calls
        );
    }
    let _ = writeln!(out);
}
