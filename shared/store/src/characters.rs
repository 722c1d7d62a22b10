//! Characters table: one item per character (`character_id`), and the catalog's version item
//! `#catalog`, which every admin write bumps in the same transaction. Readers hold the whole
//! catalog in memory (`catalog`): they read the version item to learn whether their snapshot is
//! current, and scan the table only when it is not.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::item::{Item, Reader, n, s, set_all};
use super::schema::characters::CHARACTER_ID;
use super::tx::{cancellation_reasons, reason_failed};
use super::{Store, StoreError};
use domain::{
    AccessType, Character, CharacterId, ContentRating, Label, ModelSettings, Popularity, Refusal, Tag, Timestamp,
};

const VERSION_ID: &str = "#catalog";
const VERSION: &str = "version";
const UPDATED_AT: &str = "updated_at";
const MESSAGES_COUNT: &str = "messages_count";
const POPULARITY: &str = "popularity";
const POPULARITY_DAY: &str = "popularity_day";
/// Parallel scan segments when the whole catalog is read.
const SCAN_SEGMENTS: i32 = 4;

#[derive(Serialize, Deserialize)]
struct TagItem {
    category: String,
    name: String,
}

/// The character item as stored, mapped by serde_dynamo.
#[derive(Serialize, Deserialize)]
struct CharacterItem {
    character_id: String,
    name: String,
    description: String,
    description_long: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    greeting: String,
    access_type: AccessType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    genre: Option<String>,
    content_rating: ContentRating,
    tags: Vec<TagItem>,
    system_prompt: String,
    model: ModelSettings,
    /// JSON text (see `crate::tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tools: Option<String>,
    is_active: bool,
    #[serde(default)]
    messages_count: u64,
    #[serde(default)]
    popularity: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    popularity_day: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<&Character> for CharacterItem {
    fn from(character: &Character) -> Self {
        Self {
            character_id: character.id.to_string(),
            name: character.name.clone(),
            description: character.description.clone(),
            description_long: character.description_long.clone(),
            avatar_url: character.avatar_url.clone(),
            greeting: character.greeting.clone(),
            access_type: character.access_type,
            genre: character.genre.as_ref().map(|genre| genre.as_str().to_owned()),
            content_rating: character.content_rating,
            tags: character
                .tags
                .iter()
                .map(|tag| TagItem { category: tag.category.as_str().to_owned(), name: tag.name.as_str().to_owned() })
                .collect(),
            system_prompt: character.system_prompt.clone(),
            model: character.model.clone(),
            tools: crate::tools::tools_text(&character.tools),
            is_active: character.is_active,
            messages_count: character.messages_count,
            popularity: character.popularity.score,
            popularity_day: character.popularity.day.map(|day| day.to_string()),
            created_at: character.created_at.to_string(),
            updated_at: character.updated_at.to_string(),
        }
    }
}

/// The character a catalog item holds.
fn character_of(item: &Item) -> Result<Character, StoreError> {
    let stored: CharacterItem =
        serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("character", "attributes"))?;
    let corrupt = |name| StoreError::corrupt("character", name);
    let label = |text: &str| Label::parse("", text).map_err(|_| corrupt("tags"));
    Ok(Character {
        id: CharacterId::parse(&stored.character_id).map_err(|_| corrupt(CHARACTER_ID))?,
        name: stored.name,
        description: stored.description,
        description_long: stored.description_long,
        avatar_url: stored.avatar_url,
        greeting: stored.greeting,
        access_type: stored.access_type,
        genre: stored
            .genre
            .as_deref()
            .map(|genre| Label::parse("", genre))
            .transpose()
            .map_err(|_| corrupt("genre"))?,
        content_rating: stored.content_rating,
        tags: stored
            .tags
            .iter()
            .map(|tag| Ok(Tag { category: label(&tag.category)?, name: label(&tag.name)? }))
            .collect::<Result<_, StoreError>>()?,
        system_prompt: stored.system_prompt,
        model: stored.model,
        tools: stored
            .tools
            .as_deref()
            .map(crate::tools::tools_from_text)
            .transpose()
            .map_err(|_| corrupt("tools"))?
            .unwrap_or_default(),
        is_active: stored.is_active,
        messages_count: stored.messages_count,
        popularity: Popularity {
            score: stored.popularity,
            day: stored.popularity_day.as_deref().map(str::parse).transpose().map_err(|_| corrupt(POPULARITY_DAY))?,
        },
        created_at: stored.created_at.parse().map_err(|_| corrupt("created_at"))?,
        updated_at: stored.updated_at.parse().map_err(|_| corrupt(UPDATED_AT))?,
    })
}

fn character_key(id: &str) -> Item {
    Item::from([(CHARACTER_ID.to_owned(), s(id))])
}

/// The whole catalog as read at one version.
pub struct CatalogRead {
    pub version: u64,
    pub characters: Vec<Character>,
}

impl Store {
    /// The catalog's version: bumped by every write to a character.
    pub async fn catalog_version(&self) -> Result<u64, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.characters)
            .set_key(Some(character_key(VERSION_ID)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        match output.item() {
            Some(item) => Reader::new(item, "catalog version").number(VERSION),
            None => Ok(0),
        }
    }

    /// Every character, active or not, with the version read before the scan (so a write during
    /// the scan makes the next check read the catalog again).
    pub async fn read_catalog(&self) -> Result<CatalogRead, StoreError> {
        let version = self.catalog_version().await?;
        let segments = (0..SCAN_SEGMENTS).map(|segment| self.scan_segment(segment));
        let mut characters = Vec::new();
        for part in futures::future::try_join_all(segments).await? {
            characters.extend(part);
        }
        Ok(CatalogRead { version, characters })
    }

    async fn scan_segment(&self, segment: i32) -> Result<Vec<Character>, StoreError> {
        let mut characters = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.tables.characters)
                .segment(segment)
                .total_segments(SCAN_SEGMENTS)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items() {
                if Reader::new(item, "character").opt_string(CHARACTER_ID)? != Some(VERSION_ID) {
                    characters.push(character_of(item)?);
                }
            }
            match output.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => return Ok(characters),
            }
        }
    }

    /// One character, active or not, read strongly consistent.
    pub async fn get_character(&self, id: &CharacterId) -> Result<Option<Character>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.characters)
            .set_key(Some(character_key(id.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item().map(character_of).transpose()
    }

    /// Adds a character; 409 when its id is taken.
    pub async fn create_character(&self, character: &Character) -> Result<(), StoreError> {
        let put = self.character_put(character)?;
        let taken = || Refusal::Conflict(format!("a character with the id {} exists", character.id));
        self.write_character(TransactWriteItem::builder().put(put).build(), taken).await
    }

    /// Replaces a character read at `read_at` (its `updated_at`); 409 when another write came first.
    /// Its counters are left as stored: the job adds to them without touching `updated_at`.
    pub async fn replace_character(&self, character: &Character, read_at: Timestamp) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(CharacterItem::from(character)).map_err(StoreError::internal)?;
        for counter in [CHARACTER_ID, MESSAGES_COUNT, POPULARITY, POPULARITY_DAY] {
            item.remove(counter);
        }
        let update = Update::builder()
            .table_name(&self.tables.characters)
            .set_key(Some(character_key(character.id.as_str())))
            .condition_expression("attribute_exists(#id) AND #read_at = :read_at")
            .expression_attribute_names("#id", CHARACTER_ID)
            .expression_attribute_names("#read_at", UPDATED_AT)
            .expression_attribute_values(":read_at", s(read_at.to_string()));
        let (update, sets) = set_all(update, item);
        let update =
            update.update_expression(format!("SET {}", sets.join(", "))).build().map_err(StoreError::internal)?;
        let raced = || Refusal::Conflict("the character changed while this change was made; retry".to_owned());
        self.write_character(TransactWriteItem::builder().update(update).build(), raced).await
    }

    fn character_put(&self, character: &Character) -> Result<Put, StoreError> {
        let item: Item = serde_dynamo::to_item(CharacterItem::from(character)).map_err(StoreError::internal)?;
        Put::builder()
            .table_name(&self.tables.characters)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", CHARACTER_ID)
            .build()
            .map_err(StoreError::internal)
    }

    /// Writes a character and bumps the catalog's version, in one transaction.
    async fn write_character(
        &self,
        write: TransactWriteItem,
        on_condition: impl FnOnce() -> Refusal,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .transact_write_items()
            .transact_items(write)
            .transact_items(TransactWriteItem::builder().update(self.version_bump()?).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                let reasons = cancellation_reasons(error)?;
                if reason_failed(reasons.first()) {
                    Err(on_condition().into())
                } else {
                    Err(StoreError::Unavailable("the catalog write was cancelled; retry".into()))
                }
            }
        }
    }

    /// The transaction items that add a finished day's `user` messages (character id → count) to
    /// the characters' counters — `messages_count`, and `popularity` (`Popularity::adding`) — and
    /// bump the catalog's version so every snapshot sees them. Each sets the counters from the
    /// character as read now, if they are still as read (only the job writes them; a cancelled
    /// transaction reads again). A character that does not exist is left out (characters are
    /// deactivated, never deleted); nothing when there are none.
    pub(crate) async fn count_items(
        &self,
        day_start: Timestamp,
        counts: &BTreeMap<String, u64>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let reads = counts.iter().map(|(id, messages)| async move {
            let Ok(id) = CharacterId::parse(id) else { return Ok(None) };
            Ok::<_, StoreError>(self.get_character(&id).await?.map(|character| (character, *messages)))
        });
        let characters: Vec<_> = futures::future::try_join_all(reads).await?.into_iter().flatten().collect();
        if characters.len() < counts.len() {
            tracing::warn!(
                missing = counts.len() - characters.len(),
                "a usage day counts messages for unknown characters"
            );
        }
        if characters.is_empty() {
            return Ok(Vec::new());
        }
        let mut items = Vec::with_capacity(characters.len() + 1);
        for (character, messages) in characters {
            let popularity = character.popularity.adding(messages, day_start);
            let day = popularity.day.map(|day| day.to_string()).unwrap_or_default();
            let update = Update::builder()
                .table_name(&self.tables.characters)
                .set_key(Some(character_key(character.id.as_str())))
                .update_expression("SET #count = :count, #popularity = :popularity, #day = :day")
                .condition_expression("#count = :before")
                .expression_attribute_names("#count", MESSAGES_COUNT)
                .expression_attribute_names("#popularity", POPULARITY)
                .expression_attribute_names("#day", POPULARITY_DAY)
                .expression_attribute_values(":before", n(character.messages_count))
                .expression_attribute_values(":count", n(character.messages_count + messages))
                .expression_attribute_values(":popularity", n(popularity.score))
                .expression_attribute_values(":day", s(day))
                .build()
                .map_err(StoreError::internal)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        items.push(TransactWriteItem::builder().update(self.version_bump()?).build());
        Ok(items)
    }

    fn version_bump(&self) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.tables.characters)
            .set_key(Some(character_key(VERSION_ID)))
            .update_expression("ADD #version :one")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(StoreError::internal)
    }
}
