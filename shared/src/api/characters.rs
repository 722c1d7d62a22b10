//! Character catalog API shapes: the listing queries, the character as callers see it, and the
//! admin bodies with their rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::nullable;

use crate::catalog::Catalog;
use crate::domain::{
    AccessType, CatalogFilter, CatalogPage, CatalogSort, Character, CharacterId, ContentRating, Gate, InputError,
    Label, ModelSettings, Refusal, Tag, TagCount, Timestamp, Tool, ToolInput, ToolView, tools_of,
};
use crate::store::StoreError;

/// `GET /v1/characters?genre=&rating=&access_type=&tags=a,b&sort=&limit=&offset=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCharacters {
    #[schemars(length(min = 1, max = 32))]
    pub genre: Option<String>,
    pub rating: Option<ContentRating>,
    pub access_type: Option<AccessType>,
    /// Comma-separated tag names; a character must carry all of them.
    pub tags: Option<String>,
    pub sort: Option<CatalogSort>,
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    #[schemars(range(min = 0, max = 100_000))]
    pub offset: Option<u32>,
}

/// A validated page request of the catalog.
pub struct Paging {
    pub limit: usize,
    pub offset: usize,
}

fn paging(limit: Option<u32>, offset: Option<u32>) -> Result<Paging, InputError> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(InputError::invalid("limit", "must be 1 to 100"));
    }
    let offset = offset.unwrap_or(0);
    if offset > 100_000 {
        return Err(InputError::invalid("offset", "must be at most 100000"));
    }
    Ok(Paging { limit: limit as usize, offset: offset as usize })
}

impl ListCharacters {
    pub fn parse(self) -> Result<(CatalogFilter, CatalogSort, Paging), InputError> {
        let tags = match self.tags.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(list) => list.split(',').map(|name| Label::parse("tags", name)).collect::<Result<_, _>>()?,
        };
        if tags.len() > MAX_TAGS {
            return Err(InputError::invalid("tags", "at most 20 tags"));
        }
        let filter = CatalogFilter {
            genre: self.genre.as_deref().map(|genre| Label::parse("genre", genre)).transpose()?,
            rating: self.rating,
            access_type: self.access_type,
            tags,
        };
        Ok((filter, self.sort.unwrap_or_default(), paging(self.limit, self.offset)?))
    }
}

/// `GET /v1/characters/search?q=&limit=&offset=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchCharacters {
    #[schemars(length(min = 1, max = 100))]
    pub q: String,
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    #[schemars(range(min = 0, max = 100_000))]
    pub offset: Option<u32>,
}

impl SearchCharacters {
    pub fn parse(self) -> Result<(String, Paging), InputError> {
        let query = self.q.trim();
        let chars = query.chars().count();
        if chars == 0 || chars > 100 {
            return Err(InputError::invalid("q", "must be 1 to 100 characters"));
        }
        Ok((query.to_owned(), paging(self.limit, self.offset)?))
    }
}

/// A character as callers see it. `system_prompt` and the model settings are shown to admins only.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CharacterView {
    pub id: CharacterId,
    pub name: String,
    pub description: String,
    pub description_long: String,
    pub avatar_url: Option<String>,
    /// The first assistant message of a new chat.
    pub greeting: String,
    pub access_type: AccessType,
    pub genre: Option<Label>,
    pub content_rating: ContentRating,
    pub tags: Vec<Tag>,
    /// Messages of the last weeks, each week's counting half as much as the one after it.
    pub popularity_score: f64,
    /// Messages users have sent in chats with the character (counted daily).
    pub messages_count: u64,
    /// False once deactivated: existing chats stay readable, new ones and new messages are refused.
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSettings>,
    /// Admins only: the character's tools (secrets never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolView>>,
}

impl CharacterView {
    pub fn new(character: &Character, admin: bool, now: Timestamp) -> Self {
        Self {
            id: character.id.clone(),
            name: character.name.clone(),
            description: character.description.clone(),
            description_long: character.description_long.clone(),
            avatar_url: character.avatar_url.clone(),
            greeting: character.greeting.clone(),
            access_type: character.access_type,
            genre: character.genre.clone(),
            content_rating: character.content_rating,
            tags: character.tags.clone(),
            popularity_score: character.popularity.score_at(now),
            messages_count: character.messages_count,
            is_active: character.is_active,
            created_at: character.created_at,
            updated_at: character.updated_at,
            system_prompt: admin.then(|| character.system_prompt.clone()),
            model: admin.then(|| character.model.clone()),
            tools: admin.then(|| character.tools.iter().map(ToolView::from).collect()),
        }
    }
}

/// A page of characters: `total` matches in all, this page from `offset`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CharacterPage {
    pub data: Vec<CharacterView>,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
}

/// `GET /v1/tags`, `GET /v1/tags/{category}`: most used first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TagList {
    pub data: Vec<TagCount>,
}

pub const MAX_TAGS: usize = 20;

/// A tag as an admin writes it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagInput {
    #[schemars(length(min = 1, max = 32))]
    pub category: String,
    #[schemars(length(min = 1, max = 32))]
    pub name: String,
}

/// A character's model settings as an admin writes them.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    #[schemars(length(min = 1, max = 128))]
    pub model: Option<String>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    #[schemars(range(min = 1, max = 100_000))]
    pub max_tokens: Option<u32>,
}

/// `POST /v1/admin/characters`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCharacter {
    /// A slug; generated (a UUID) when absent.
    #[schemars(length(min = 1, max = 64))]
    pub id: Option<String>,
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub description: String,
    #[serde(default)]
    #[schemars(length(max = 10_000))]
    pub description_long: String,
    #[schemars(length(max = 2048))]
    pub avatar_url: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 4000))]
    pub greeting: String,
    #[serde(default)]
    pub access_type: AccessType,
    #[schemars(length(min = 1, max = 32))]
    pub genre: Option<String>,
    #[serde(default)]
    pub content_rating: ContentRating,
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub tags: Vec<TagInput>,
    #[serde(default)]
    #[schemars(length(max = 16_000))]
    pub system_prompt: String,
    pub model: Option<ModelInput>,
    /// Tools the character's replies may call (at most 8; see "Tools").
    pub tools: Option<Vec<ToolInput>>,
    pub is_active: Option<bool>,
}

/// `PATCH /v1/admin/characters/{id}`: fields present are set; `null` clears `avatar_url`,
/// `genre` and `model`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCharacter {
    #[schemars(length(min = 1, max = 100))]
    pub name: Option<String>,
    #[schemars(length(max = 500))]
    pub description: Option<String>,
    #[schemars(length(max = 10_000))]
    pub description_long: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<String>", length(max = 2048))]
    pub avatar_url: Option<Option<String>>,
    #[schemars(length(max = 4000))]
    pub greeting: Option<String>,
    pub access_type: Option<AccessType>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<String>", length(min = 1, max = 32))]
    pub genre: Option<Option<String>>,
    pub content_rating: Option<ContentRating>,
    #[schemars(length(max = 20))]
    pub tags: Option<Vec<TagInput>>,
    #[schemars(length(max = 16_000))]
    pub system_prompt: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<ModelInput>")]
    pub model: Option<Option<ModelInput>>,
    /// Replaces the character's tools (`[]` removes them).
    pub tools: Option<Vec<ToolInput>>,
    pub is_active: Option<bool>,
}

fn text(field: &str, value: &str, min: usize, max: usize, multiline: bool) -> Result<String, InputError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(InputError::invalid(field, format!("must be {min} to {max} characters")));
    }
    let bad = |c: char| c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r'));
    if value.chars().any(bad) {
        return Err(InputError::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

fn avatar_url(value: &str) -> Result<String, InputError> {
    let invalid = || InputError::invalid("avatar_url", "must be an absolute http or https URL of at most 2048 bytes");
    if value.len() > 2048 {
        return Err(invalid());
    }
    let url = url::Url::parse(value).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid());
    }
    Ok(url.to_string())
}

fn tags(inputs: Vec<TagInput>) -> Result<Vec<Tag>, InputError> {
    if inputs.len() > MAX_TAGS {
        return Err(InputError::invalid("tags", "at most 20 tags"));
    }
    let mut tags = inputs
        .into_iter()
        .map(|tag| {
            Ok(Tag {
                category: Label::parse("tags.category", &tag.category)?,
                name: Label::parse("tags.name", &tag.name)?,
            })
        })
        .collect::<Result<Vec<_>, InputError>>()?;
    tags.sort();
    tags.dedup();
    Ok(tags)
}

fn model(input: ModelInput) -> Result<ModelSettings, InputError> {
    let model = input.model.as_deref().map(|name| text("model.model", name, 1, 128, false)).transpose()?;
    if let Some(temperature) = input.temperature
        && !(0.0..=2.0).contains(&temperature)
    {
        return Err(InputError::invalid("model.temperature", "must be 0 to 2"));
    }
    if let Some(tokens) = input.max_tokens
        && !(1..=100_000).contains(&tokens)
    {
        return Err(InputError::invalid("model.max_tokens", "must be 1 to 100000"));
    }
    Ok(ModelSettings { model, temperature: input.temperature, max_tokens: input.max_tokens })
}

const NAME: (usize, usize) = (1, 100);
const DESCRIPTION: usize = 500;
const DESCRIPTION_LONG: usize = 10_000;
const GREETING: usize = 4000;
const SYSTEM_PROMPT: usize = 16_000;

impl CreateCharacter {
    /// The new character, validated; counters at zero.
    pub fn into_character(self, now: Timestamp) -> Result<Character, InputError> {
        Ok(Character {
            id: self.id.as_deref().map(CharacterId::parse).transpose()?.unwrap_or_else(CharacterId::generate),
            name: text("name", &self.name, NAME.0, NAME.1, false)?,
            description: text("description", &self.description, 0, DESCRIPTION, true)?,
            description_long: text("description_long", &self.description_long, 0, DESCRIPTION_LONG, true)?,
            avatar_url: self.avatar_url.as_deref().map(avatar_url).transpose()?,
            greeting: text("greeting", &self.greeting, 0, GREETING, true)?,
            access_type: self.access_type,
            genre: self.genre.as_deref().map(|genre| Label::parse("genre", genre)).transpose()?,
            content_rating: self.content_rating,
            tags: tags(self.tags)?,
            system_prompt: text("system_prompt", &self.system_prompt, 0, SYSTEM_PROMPT, true)?,
            model: self.model.map(model).transpose()?.unwrap_or_default(),
            tools: self.tools.map(tools_of).transpose()?.unwrap_or_default(),
            is_active: self.is_active.unwrap_or(true),
            messages_count: 0,
            popularity: Default::default(),
            created_at: now,
            updated_at: now,
        })
    }
}

impl UpdateCharacter {
    /// Applies the changes to `character`; `false` when they change nothing.
    pub fn apply(self, character: &mut Character) -> Result<bool, InputError> {
        let before = character.clone();
        if let Some(name) = &self.name {
            character.name = text("name", name, NAME.0, NAME.1, false)?;
        }
        if let Some(description) = &self.description {
            character.description = text("description", description, 0, DESCRIPTION, true)?;
        }
        if let Some(long) = &self.description_long {
            character.description_long = text("description_long", long, 0, DESCRIPTION_LONG, true)?;
        }
        if let Some(url) = &self.avatar_url {
            character.avatar_url = url.as_deref().map(avatar_url).transpose()?;
        }
        if let Some(greeting) = &self.greeting {
            character.greeting = text("greeting", greeting, 0, GREETING, true)?;
        }
        if let Some(access_type) = self.access_type {
            character.access_type = access_type;
        }
        if let Some(genre) = &self.genre {
            character.genre = genre.as_deref().map(|genre| Label::parse("genre", genre)).transpose()?;
        }
        if let Some(rating) = self.content_rating {
            character.content_rating = rating;
        }
        if let Some(list) = self.tags {
            character.tags = tags(list)?;
        }
        if let Some(prompt) = &self.system_prompt {
            character.system_prompt = text("system_prompt", prompt, 0, SYSTEM_PROMPT, true)?;
        }
        if let Some(settings) = self.model {
            character.model = settings.map(model).transpose()?.unwrap_or_default();
        }
        if let Some(tools) = self.tools {
            character.tools = tools_of(tools)?;
        }
        if let Some(active) = self.is_active {
            character.is_active = active;
        }
        Ok(*character != before)
    }
}

/// The catalog's reads and admin writes as the routes ask for them.
pub async fn list(catalog: &Catalog, query: ListCharacters, admin: bool) -> Result<CharacterPage, StoreError> {
    let (filter, sort, paging) = query.parse()?;
    let snapshot = catalog.snapshot().await?;
    Ok(page(snapshot.index.list(&filter, sort, paging.offset, paging.limit), paging, admin, catalog.now()))
}

pub async fn search(catalog: &Catalog, query: SearchCharacters, admin: bool) -> Result<CharacterPage, StoreError> {
    let (text, paging) = query.parse()?;
    let snapshot = catalog.snapshot().await?;
    Ok(page(snapshot.index.search(&text, paging.offset, paging.limit), paging, admin, catalog.now()))
}

fn page(page: CatalogPage<&Character>, paging: Paging, admin: bool, now: Timestamp) -> CharacterPage {
    CharacterPage {
        data: page.data.into_iter().map(|character| CharacterView::new(character, admin, now)).collect(),
        total: page.total,
        limit: paging.limit,
        offset: paging.offset,
    }
}

/// A character by id, inactive ones included (their chats still show them); 404
/// `character_not_found` for an unknown id.
pub async fn view(catalog: &Catalog, id: &CharacterId, admin: bool) -> Result<CharacterView, StoreError> {
    let snapshot = catalog.snapshot().await?;
    let character = snapshot.index.get(id).ok_or(Refusal::Gate(Gate::NotFound))?;
    Ok(CharacterView::new(character, admin, catalog.now()))
}

pub async fn tag_list(catalog: &Catalog, category: Option<&Label>) -> Result<TagList, StoreError> {
    Ok(TagList { data: catalog.snapshot().await?.index.tags(category) })
}

/// `POST /v1/admin/characters`; its tools' URLs pass the deployment's policy (`admit`).
pub async fn admin_create(
    catalog: &Catalog,
    body: CreateCharacter,
    admit: impl Fn(&[Tool]) -> Result<(), StoreError>,
) -> Result<CharacterView, StoreError> {
    let now = catalog.now();
    let character = body.into_character(now)?;
    admit(&character.tools)?;
    catalog.create(&character).await?;
    Ok(CharacterView::new(&character, true, now))
}

/// `PATCH /v1/admin/characters/{id}` (and `DELETE`, which deactivates).
pub async fn admin_update(
    catalog: &Catalog,
    id: &CharacterId,
    body: UpdateCharacter,
    admit: impl Fn(&[Tool]) -> Result<(), StoreError>,
) -> Result<CharacterView, StoreError> {
    if let Some(tools) = &body.tools {
        admit(&tools_of(tools.clone())?)?;
    }
    let character = catalog.update(id, |character| body.apply(character)).await?;
    Ok(CharacterView::new(&character, true, catalog.now()))
}
