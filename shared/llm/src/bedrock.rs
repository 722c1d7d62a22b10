//! Amazon Bedrock's ConverseStream through `aws-sdk-bedrockruntime`, with the function's IAM role
//! (`bedrock:InvokeModelWithResponseStream` on the configured model). The SDK decodes the AWS
//! event-stream frames; this maps its events and errors onto the model port.

use std::time::Duration;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ContentBlockDelta, ContentBlockStart, ConversationRole,
    ConverseStreamOutput, InferenceConfiguration, Message, SpecificToolChoice, StopReason as BedrockStop,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock,
    ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};

use super::{
    AnswerShape, Model, ModelError, ModelEvent, ModelFinished, ModelStream, Prompt, PromptRole, StopReason,
    TokenCounts, ToolRound, ToolUse,
};

pub struct Bedrock {
    client: Client,
}

impl Bedrock {
    /// A client from the function's AWS configuration (region, role credentials, and
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` if set). One SDK retry: a reply the caller waits for
    /// should fail fast and say it is `retryable` rather than back off for long.
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        let config = aws_sdk_bedrockruntime::config::Builder::from(sdk_config)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .build();
        Self { client: Client::from_conf(config) }
    }

    async fn start(&self, prompt: Prompt) -> Result<ModelStream, ModelError> {
        let (system, messages) = conversation(&prompt)?;
        let tool_config = match &prompt.shape {
            Some(shape) => Some(forced_tool(shape)?),
            None => offered_tools(&prompt)?,
        };
        let inference = InferenceConfiguration::builder()
            .max_tokens(i32::try_from(prompt.max_tokens).unwrap_or(i32::MAX))
            .set_temperature(prompt.temperature)
            .build();
        let output = self
            .client
            .converse_stream()
            .model_id(&prompt.model)
            .set_system(Some(system))
            .set_messages(Some(messages))
            .inference_config(inference)
            .set_tool_config(tool_config)
            .send()
            .await
            .map_err(|error| classify(&error))?;
        let reader = Reader {
            events: output.stream,
            stop: None,
            usage: None,
            ended: false,
            shaped: prompt.shape.is_some(),
            call: None,
            calls: Vec::new(),
        };
        Ok(stream::unfold(reader, |mut reader| async move { reader.next().await.map(|item| (item, reader)) }).boxed())
    }
}

impl Model for Bedrock {
    fn stream(&self, prompt: Prompt) -> BoxFuture<'_, Result<ModelStream, ModelError>> {
        Box::pin(self.start(prompt))
    }
}

/// The prompt as Converse wants it: system blocks apart, and a conversation that starts with the
/// user and alternates (consecutive lines of one role are joined; an opening line of the
/// assistant's — a character's greeting — is told in the system prompt instead).
fn conversation(prompt: &Prompt) -> Result<(Vec<SystemContentBlock>, Vec<Message>), ModelError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    // Converse refuses `toolUse` and `toolResult` blocks without a tool configuration: where no
    // tools are offered, earlier rounds are told as text.
    let native = !prompt.tools.is_empty();
    for line in &prompt.messages {
        let role = match line.role {
            PromptRole::System => {
                system.push(SystemContentBlock::Text(line.content.clone()));
                continue;
            }
            PromptRole::User => ConversationRole::User,
            PromptRole::Assistant if turns.0.is_empty() => {
                system.push(SystemContentBlock::Text(format!("You opened the conversation with: {}", line.content)));
                continue;
            }
            PromptRole::Assistant => ConversationRole::Assistant,
        };
        for round in &line.rounds {
            turns.round(round, native)?;
        }
        if line.rounds.is_empty() || !line.content.is_empty() {
            turns.push(role, ContentBlock::Text(line.content.clone()));
        }
    }
    for round in &prompt.rounds {
        turns.round(round, native)?;
    }
    let messages = turns
        .0
        .into_iter()
        .map(|(role, blocks)| Message::builder().role(role).set_content(Some(blocks)).build().map_err(malformed))
        .collect::<Result<_, _>>()?;
    Ok((system, messages))
}

/// The conversation as Converse takes it: one role after the other, each turn its blocks
/// (consecutive lines of one role are one turn; their texts joined).
#[derive(Default)]
struct Turns(Vec<(ConversationRole, Vec<ContentBlock>)>);

impl Turns {
    fn push(&mut self, role: ConversationRole, block: ContentBlock) {
        match self.0.last_mut() {
            Some((last, blocks)) if *last == role => match (blocks.last_mut(), block) {
                (Some(ContentBlock::Text(text)), ContentBlock::Text(more)) => {
                    text.push_str("\n\n");
                    text.push_str(&more);
                }
                (_, block) => blocks.push(block),
            },
            _ => self.0.push((role, vec![block])),
        }
    }

    /// A round: the assistant's text and `toolUse` blocks, then the user's `toolResult` blocks
    /// under the same ids — or, not `native`, the calls and results as text.
    fn round(&mut self, round: &ToolRound, native: bool) -> Result<(), ModelError> {
        if !round.text.is_empty() {
            self.push(ConversationRole::Assistant, ContentBlock::Text(round.text.clone()));
        }
        for call in &round.calls {
            let block = if native {
                let block = ToolUseBlock::builder()
                    .tool_use_id(&call.id)
                    .name(&call.name)
                    .input(document(&call.arguments))
                    .build()
                    .map_err(malformed)?;
                ContentBlock::ToolUse(block)
            } else {
                ContentBlock::Text(call.as_text())
            };
            self.push(ConversationRole::Assistant, block);
        }
        for result in &round.results {
            let block = if native {
                let (content, status) = match &result.output {
                    Ok(value) if value.is_object() => {
                        (ToolResultContentBlock::Json(document(value)), ToolResultStatus::Success)
                    }
                    Ok(value) => (ToolResultContentBlock::Text(value.to_string()), ToolResultStatus::Success),
                    Err(error) => (ToolResultContentBlock::Text(error.clone()), ToolResultStatus::Error),
                };
                let block = ToolResultBlock::builder()
                    .tool_use_id(&result.id)
                    .content(content)
                    .status(status)
                    .build()
                    .map_err(malformed)?;
                ContentBlock::ToolResult(block)
            } else {
                ContentBlock::Text(result.as_text())
            };
            self.push(ConversationRole::User, block);
        }
        Ok(())
    }
}

/// The prompt's tools as Converse offers them. Converse has no "none": a last round that must not
/// call still lists the tools (a conversation holding `toolUse` blocks needs them), and calls made
/// anyway are dropped by the caller.
fn offered_tools(prompt: &Prompt) -> Result<Option<ToolConfiguration>, ModelError> {
    if prompt.tools.is_empty() {
        return Ok(None);
    }
    let mut config = ToolConfiguration::builder();
    for tool in &prompt.tools {
        config = config.tools(tool_spec(&tool.name, &tool.description, &tool.parameters)?);
    }
    let choice = match &prompt.tool_choice {
        ToolUse::Auto | ToolUse::None => ToolChoice::Auto(AutoToolChoice::builder().build()),
        ToolUse::Required => ToolChoice::Any(AnyToolChoice::builder().build()),
        ToolUse::Named(name) => ToolChoice::Tool(SpecificToolChoice::builder().name(name).build().map_err(malformed)?),
    };
    config.tool_choice(choice).build().map(Some).map_err(malformed)
}

/// A shaped answer as Converse gives one: the input of a tool the model must call (Converse has
/// no response format of its own). The tool's input arrives as `ToolUse` deltas of JSON text.
fn forced_tool(shape: &AnswerShape) -> Result<ToolConfiguration, ModelError> {
    let choice = SpecificToolChoice::builder().name(&shape.name).build().map_err(malformed)?;
    ToolConfiguration::builder()
        .tools(tool_spec(&shape.name, &shape.description, &shape.schema)?)
        .tool_choice(ToolChoice::Tool(choice))
        .build()
        .map_err(malformed)
}

/// A tool as Converse declares it: its name, what it does, the JSON Schema of its input.
fn tool_spec(name: &str, description: &str, schema: &serde_json::Value) -> Result<Tool, ModelError> {
    let spec = ToolSpecification::builder()
        .name(name)
        .description(description)
        .input_schema(ToolInputSchema::Json(document(schema)))
        .build()
        .map_err(malformed)?;
    Ok(Tool::ToolSpec(spec))
}

/// A request the SDK's builders refused (a required field missing).
fn malformed(error: aws_smithy_types::error::operation::BuildError) -> ModelError {
    ModelError::Malformed(error.to_string())
}

/// A JSON value as the SDK's `Document`.
fn document(value: &serde_json::Value) -> Document {
    use serde_json::Value;
    match value {
        Value::Null => Document::Null,
        Value::Bool(flag) => Document::Bool(*flag),
        Value::Number(number) => Document::Number(match (number.as_u64(), number.as_i64()) {
            (Some(positive), _) => Number::PosInt(positive),
            (None, Some(negative)) => Number::NegInt(negative),
            _ => Number::Float(number.as_f64().unwrap_or_default()),
        }),
        Value::String(text) => Document::String(text.clone()),
        Value::Array(items) => Document::Array(items.iter().map(document).collect()),
        Value::Object(fields) => {
            Document::Object(fields.iter().map(|(name, value)| (name.clone(), document(value))).collect())
        }
    }
}

/// What an error from Bedrock means for the reply, by its code.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: &SdkError<E, R>,
) -> ModelError {
    let Some(service) = error.as_service_error() else {
        tracing::warn!(error = %aws_sdk_bedrockruntime::error::DisplayErrorContext(error), "Bedrock call failed");
        return match error {
            SdkError::TimeoutError(_) => ModelError::Timeout,
            _ => ModelError::Unavailable("cannot reach Bedrock".to_owned()),
        };
    };
    let message = service.message().unwrap_or_default().chars().take(300).collect::<String>();
    match service.code().unwrap_or_default() {
        "ThrottlingException" | "throttlingException" | "ServiceQuotaExceededException" => {
            ModelError::Busy { retry_after: Some(Duration::from_secs(1)) }
        }
        "ModelTimeoutException" => ModelError::Timeout,
        "ValidationException" | "validationException" => {
            let lower = message.to_ascii_lowercase();
            if ["too long", "context", "too many tokens"].iter().any(|marker| lower.contains(marker)) {
                ModelError::ContextTooLong
            } else {
                ModelError::Rejected(message)
            }
        }
        "AccessDeniedException" | "ResourceNotFoundException" => ModelError::Rejected(message),
        code => ModelError::Unavailable(if code.is_empty() { message } else { code.to_owned() }),
    }
}

fn stop_reason(stop: &BedrockStop) -> StopReason {
    match stop {
        BedrockStop::EndTurn | BedrockStop::StopSequence => StopReason::EndTurn,
        BedrockStop::MaxTokens | BedrockStop::ModelContextWindowExceeded => StopReason::MaxTokens,
        BedrockStop::ContentFiltered | BedrockStop::GuardrailIntervened => StopReason::ContentFilter,
        _ => StopReason::Other,
    }
}

struct Reader {
    events: aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
        ConverseStreamOutput,
        aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError,
    >,
    stop: Option<BedrockStop>,
    usage: Option<TokenCounts>,
    ended: bool,
    /// The forced tool of a shaped answer: its input is the answer's text.
    shaped: bool,
    /// The call being streamed (its name, its input's JSON so far) and the calls done.
    call: Option<(String, String)>,
    calls: Vec<ModelEvent>,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<ModelEvent, ModelError>> {
        loop {
            if !self.calls.is_empty() && self.ended {
                return Some(Ok(self.calls.remove(0)));
            }
            if self.ended {
                return None;
            }
            match self.events.recv().await {
                Ok(Some(ConverseStreamOutput::ContentBlockStart(event))) => {
                    if let Some(ContentBlockStart::ToolUse(start)) = event.start()
                        && !self.shaped
                    {
                        self.call = Some((start.name().to_owned(), String::new()));
                    }
                }
                Ok(Some(ConverseStreamOutput::ContentBlockDelta(event))) => {
                    let text = match event.delta() {
                        Some(ContentBlockDelta::Text(text)) => text.as_str(),
                        // A call's input, gathered until its block stops.
                        Some(ContentBlockDelta::ToolUse(tool)) if !self.shaped => {
                            if let Some((_, input)) = self.call.as_mut() {
                                input.push_str(tool.input());
                            }
                            ""
                        }
                        // The forced tool's input: the shaped answer's JSON.
                        Some(ContentBlockDelta::ToolUse(tool)) => tool.input(),
                        _ => "",
                    };
                    if !text.is_empty() {
                        return Some(Ok(ModelEvent::Text(text.to_owned())));
                    }
                }
                Ok(Some(ConverseStreamOutput::ContentBlockStop(_))) => {
                    if let Some((name, input)) = self.call.take() {
                        let arguments = if input.trim().is_empty() {
                            serde_json::json!({})
                        } else {
                            serde_json::from_str(&input).unwrap_or(serde_json::Value::String(input))
                        };
                        self.calls.push(ModelEvent::ToolCall { name, arguments });
                    }
                }
                Ok(Some(ConverseStreamOutput::MessageStop(event))) => self.stop = Some(event.stop_reason().clone()),
                Ok(Some(ConverseStreamOutput::Metadata(event))) => {
                    self.usage = event.usage().map(|usage| TokenCounts {
                        input_tokens: u64::try_from(usage.input_tokens()).unwrap_or(0),
                        output_tokens: u64::try_from(usage.output_tokens()).unwrap_or(0),
                    });
                }
                Ok(Some(_)) => {}
                // The stream is over: complete if the model said why it stopped (usage may be
                // missing: the caller estimates it), broken off otherwise.
                Ok(None) => {
                    self.ended = true;
                    let end = match self.stop.take() {
                        Some(stop) => Ok(ModelEvent::Finished(ModelFinished {
                            stop: stop_reason(&stop),
                            stop_detail: stop.as_str().to_owned(),
                            usage: self.usage,
                        })),
                        None => Err(ModelError::Unavailable("the stream ended before the answer did".to_owned())),
                    };
                    // The calls first, then the end.
                    if end.is_ok() && !self.calls.is_empty() {
                        if let Ok(finished) = end {
                            self.calls.push(finished);
                        }
                        return Some(Ok(self.calls.remove(0)));
                    }
                    return Some(end);
                }
                Err(error) => {
                    self.ended = true;
                    return Some(Err(match classify(&error) {
                        ModelError::Rejected(message) => ModelError::Unavailable(message),
                        other => other,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PromptMessage, ToolCallSpec, ToolOutcome, ToolSpec};

    fn prompt(tools: Vec<ToolSpec>) -> Prompt {
        let round = ToolRound {
            text: "Let me look.".to_owned(),
            calls: vec![ToolCallSpec {
                id: "m2_call_1".to_owned(),
                name: "get_weather".to_owned(),
                arguments: serde_json::json!({"city": "Oslo"}),
            }],
            results: vec![ToolOutcome {
                id: "m2_call_1".to_owned(),
                name: "get_weather".to_owned(),
                output: Ok(serde_json::json!({"c": 3})),
            }],
        };
        let mut earlier = PromptMessage::new(PromptRole::Assistant, "It is 3 °C.".to_owned());
        earlier.rounds = vec![round];
        let messages = vec![
            PromptMessage::new(PromptRole::System, "Be brief.".to_owned()),
            PromptMessage::new(PromptRole::User, "Weather in Oslo?".to_owned()),
            earlier,
            PromptMessage::new(PromptRole::User, "And now?".to_owned()),
        ];
        let mut prompt = Prompt::new("m".to_owned(), messages, 64);
        prompt.tools = tools;
        prompt
    }

    fn shape(messages: &[Message]) -> Vec<(ConversationRole, Vec<&'static str>)> {
        let kind = |block: &ContentBlock| match block {
            ContentBlock::Text(_) => "text",
            ContentBlock::ToolUse(_) => "tool_use",
            ContentBlock::ToolResult(_) => "tool_result",
            _ => "other",
        };
        messages.iter().map(|message| (message.role().clone(), message.content().iter().map(kind).collect())).collect()
    }

    /// An earlier reply's round goes as Converse's own blocks where tools are offered: the call in
    /// the assistant's turn, its result in the user's, the reply's text after it; roles alternate.
    #[test]
    fn an_earlier_round_is_tool_use_and_tool_result_blocks_when_tools_are_offered() {
        let tool = ToolSpec {
            name: "get_weather".to_owned(),
            description: "d".to_owned(),
            parameters: serde_json::json!({"type": "object"}),
        };
        let (system, messages) = conversation(&prompt(vec![tool])).unwrap_or_else(|_| unreachable!());
        assert_eq!(system.len(), 1);
        use ConversationRole::{Assistant, User};
        assert_eq!(
            shape(&messages),
            [
                (User, vec!["text"]),
                (Assistant, vec!["text", "tool_use"]),
                (User, vec!["tool_result"]),
                (Assistant, vec!["text"]),
                (User, vec!["text"]),
            ]
        );
        let ContentBlock::ToolUse(call) = &messages[1].content()[1] else { unreachable!() };
        let ContentBlock::ToolResult(result) = &messages[2].content()[0] else { unreachable!() };
        assert_eq!((call.tool_use_id(), result.tool_use_id()), ("m2_call_1", "m2_call_1"));
    }

    /// Without tools Converse refuses those blocks: the round is told as text, and the turns still
    /// alternate.
    #[test]
    fn an_earlier_round_is_text_when_no_tools_are_offered() {
        let (_, messages) = conversation(&prompt(Vec::new())).unwrap_or_else(|_| unreachable!());
        use ConversationRole::{Assistant, User};
        assert_eq!(
            shape(&messages),
            [
                (User, vec!["text"]),
                (Assistant, vec!["text"]),
                (User, vec!["text"]),
                (Assistant, vec!["text"]),
                (User, vec!["text"])
            ]
        );
        let ContentBlock::Text(call) = &messages[1].content()[0] else { unreachable!() };
        assert!(call.starts_with("Let me look.") && call.contains("\"call\":\"get_weather\""), "{call}");
        let ContentBlock::Text(result) = &messages[2].content()[0] else { unreachable!() };
        assert_eq!(result, "Result of get_weather: {\"c\":3}");
    }
}
