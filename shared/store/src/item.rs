//! AttributeValue mapping helpers. Only `store` sees these.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::builders::UpdateBuilder;

use super::StoreError;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn b(value: bool) -> AttributeValue {
    AttributeValue::Bool(value)
}

/// `update` setting every attribute of `item` (placeholders `#a<i>` / `:a<i>`), and the SET
/// clauses it needs, for the caller to join with its own.
pub(crate) fn set_all(mut update: UpdateBuilder, item: Item) -> (UpdateBuilder, Vec<String>) {
    let mut sets = Vec::with_capacity(item.len() + 2);
    for (index, (name, value)) in item.into_iter().enumerate() {
        sets.push(format!("#a{index} = :a{index}"));
        update = update
            .expression_attribute_names(format!("#a{index}"), name)
            .expression_attribute_values(format!(":a{index}"), value);
    }
    (update, sets)
}

/// Reads typed attributes out of an item; a missing or mistyped attribute is a corrupt item.
pub(crate) struct Reader<'a> {
    item: &'a Item,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(item: &'a Item, kind: &'static str) -> Self {
        Self { item, kind }
    }

    fn corrupt(&self, name: &str) -> StoreError {
        StoreError::corrupt(self.kind, name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a AttributeValue> {
        self.item.get(name).filter(|value| !matches!(value, AttributeValue::Null(_)))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn string(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_string(name)?.ok_or_else(|| self.corrupt(name))
    }

    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text)),
            Some(_) => Err(self.corrupt(name)),
        }
    }

    pub(crate) fn parse<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.string(name)?.parse().map_err(|_| self.corrupt(name))
    }

    pub(crate) fn number<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.opt_number(name)?.ok_or_else(|| self.corrupt(name))
    }

    pub(crate) fn opt_number<T: FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(text)) => text.parse().map(Some).map_err(|_| self.corrupt(name)),
            Some(_) => Err(self.corrupt(name)),
        }
    }
}
