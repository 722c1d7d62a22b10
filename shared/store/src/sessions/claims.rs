//! The caller's chat with each character: one `chat#<character_id>` item in the caller's limits
//! partition (beside their other per-user items) naming the session. This module alone maps and
//! writes it.

use aws_sdk_dynamodb::types::Put;

use crate::item::{Item, Reader, s};
use crate::schema::sessions::SESSION_ID;
use crate::{Store, StoreError};
use domain::{CharacterId, SessionId, UserId};

/// Which chat a new session becomes the caller's chat with a character in place of.
pub struct ChatClaim {
    pub character_id: CharacterId,
    /// The recorded chat it replaces (deleted since), or `None` when there is none.
    pub replaces: Option<SessionId>,
}

/// The caller's chat with a character is recorded in the caller's limits partition
/// (`chat#<character_id>`), beside their other per-user items.
fn chat_key(user: &UserId, character: &CharacterId) -> Item {
    Item::from([
        (crate::schema::limits::USER_ID.to_owned(), s(user.as_str())),
        (crate::schema::limits::ITEM.to_owned(), s(format!("chat#{character}"))),
    ])
}

impl Store {
    /// The session recorded as the caller's chat with `character`, if any (it may since have
    /// been deleted).
    pub async fn character_chat(
        &self,
        user: &UserId,
        character: &CharacterId,
    ) -> Result<Option<SessionId>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.limits)
            .set_key(Some(chat_key(user, character)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item().map(|item| Reader::new(item, "character chat").parse(SESSION_ID)).transpose()
    }

    /// Records a session as the caller's chat with a character if there is none yet; `false`
    /// when there is.
    pub async fn claim_character_chat(
        &self,
        user: &UserId,
        claim: &ChatClaim,
        session: SessionId,
    ) -> Result<bool, StoreError> {
        let result = self.put_item(self.chat_claim_put(user, claim, session)?).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(false)
            }
            Err(error) => Err(StoreError::from_sdk(error)),
        }
    }

    /// The chat record's write: only over no record, or over the one `claim` replaces.
    pub(super) fn chat_claim_put(
        &self,
        user: &UserId,
        claim: &ChatClaim,
        session: SessionId,
    ) -> Result<Put, StoreError> {
        let mut item = chat_key(user, &claim.character_id);
        item.insert(SESSION_ID.to_owned(), s(session.to_string()));
        let put = Put::builder().table_name(&self.tables.limits).set_item(Some(item));
        let put = match claim.replaces {
            None => put
                .condition_expression("attribute_not_exists(#item)")
                .expression_attribute_names("#item", crate::schema::limits::ITEM),
            Some(old) => put
                .condition_expression("#session_id = :old")
                .expression_attribute_names("#session_id", SESSION_ID)
                .expression_attribute_values(":old", s(old.to_string())),
        };
        put.build().map_err(StoreError::internal)
    }
}
