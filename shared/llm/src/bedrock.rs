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
    TokenCounts, ToolUse,
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
        let (system, mut messages) = conversation(&prompt)?;
        messages.extend(rounds(&prompt)?);
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
    let mut turns: Vec<(ConversationRole, String)> = Vec::new();
    for line in &prompt.messages {
        let role = match line.role {
            PromptRole::System => {
                system.push(SystemContentBlock::Text(line.content.clone()));
                continue;
            }
            PromptRole::User => ConversationRole::User,
            PromptRole::Assistant if turns.is_empty() => {
                system.push(SystemContentBlock::Text(format!("You opened the conversation with: {}", line.content)));
                continue;
            }
            PromptRole::Assistant => ConversationRole::Assistant,
        };
        match turns.last_mut() {
            Some((last, text)) if *last == role => {
                text.push_str("\n\n");
                text.push_str(&line.content);
            }
            _ => turns.push((role, line.content.clone())),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, text)| Message::builder().role(role).content(ContentBlock::Text(text)).build().map_err(malformed))
        .collect::<Result<_, _>>()?;
    Ok((system, messages))
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

/// The answer's earlier rounds as Converse carries them: the assistant's text and `toolUse`
/// blocks, then the user's `toolResult` blocks under the same ids.
fn rounds(prompt: &Prompt) -> Result<Vec<Message>, ModelError> {
    let mut messages = Vec::new();
    for round in &prompt.rounds {
        let mut said = Message::builder().role(ConversationRole::Assistant);
        if !round.text.is_empty() {
            said = said.content(ContentBlock::Text(round.text.clone()));
        }
        for call in &round.calls {
            let block = ToolUseBlock::builder()
                .tool_use_id(&call.id)
                .name(&call.name)
                .input(document(&call.arguments))
                .build()
                .map_err(malformed)?;
            said = said.content(ContentBlock::ToolUse(block));
        }
        messages.push(said.build().map_err(malformed)?);
        let mut results = Message::builder().role(ConversationRole::User);
        for result in &round.results {
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
            results = results.content(ContentBlock::ToolResult(block));
        }
        messages.push(results.build().map_err(malformed)?);
    }
    Ok(messages)
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
