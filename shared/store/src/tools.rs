//! Tools as a session or a character item keeps them: one JSON text attribute, secrets included
//! (never returned: the domain's `Session` and the admin view show `ToolView`s).

use serde::{Deserialize, Serialize};

use crate::StoreError;
use domain::{Builtin, Tool, ToolKind, ToolName, ToolSecret};

/// One tool inside the `tools` JSON text.
#[derive(Serialize, Deserialize)]
struct ToolItem {
    name: String,
    description: String,
    parameters: serde_json::Value,
    kind: ToolKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    timeout_ms: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// `tools` as stored: JSON text, absent when there are none (written by create and by update).
pub(crate) fn tools_text(tools: &[Tool]) -> Option<String> {
    let items: Vec<ToolItem> = tools
        .iter()
        .map(|tool| ToolItem {
            name: tool.name.as_str().to_owned(),
            description: tool.description.clone(),
            parameters: tool.parameters.clone(),
            kind: tool.kind,
            url: tool.url.clone(),
            timeout_ms: tool.timeout_ms,
            secret: tool.secret.as_ref().map(|secret| secret.expose().to_owned()),
        })
        .collect();
    (!items.is_empty()).then(|| serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned()))
}

pub(crate) fn tools_from_text(text: &str) -> Result<Vec<Tool>, StoreError> {
    let corrupt = || StoreError::corrupt("tools", "tools");
    let items: Vec<ToolItem> = serde_json::from_str(text).map_err(|_| corrupt())?;
    items
        .into_iter()
        .map(|item| {
            let name = ToolName::parse(&item.name).map_err(|_| corrupt())?;
            if item.kind == ToolKind::Builtin {
                // A built-in tool takes its arguments' schema as this build has it.
                let builtin = Builtin::named(name.as_str()).ok_or_else(corrupt)?;
                return Ok(Tool::of_builtin(builtin, name, item.description));
            }
            Ok(Tool {
                name,
                description: item.description,
                parameters: item.parameters,
                kind: item.kind,
                url: item.url,
                timeout_ms: item.timeout_ms,
                secret: item.secret.as_deref().map(ToolSecret::parse).transpose().map_err(|_| corrupt())?,
            })
        })
        .collect()
}
