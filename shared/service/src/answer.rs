//! A model's whole answer at once — for the calls whose text is data read when it is complete
//! (memory extraction, summaries, a group chat's routing), not streamed to anyone.

use std::time::Duration;

use futures::StreamExt;
use llm::{Model, ModelError, ModelEvent, Prompt, TokenCounts};

/// The answer's text and the provider's token counts, within `limit` from the request to the
/// end (`Timeout` past it); a stream that ends without finishing is `Unavailable`.
pub(crate) async fn whole_answer(
    model: &dyn Model,
    prompt: Prompt,
    limit: Duration,
) -> Result<(String, Option<TokenCounts>), ModelError> {
    let answer = async {
        let mut stream = model.stream(prompt).await?;
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            match event? {
                ModelEvent::Text(piece) => text.push_str(&piece),
                // Offered no tools, a model that calls one says nothing usable.
                ModelEvent::ToolCall { .. } => {}
                ModelEvent::Finished(finished) => return Ok((text, finished.usage)),
            }
        }
        Err(ModelError::Unavailable("the answer ended early".to_owned()))
    };
    tokio::time::timeout(limit, answer).await.map_err(|_| ModelError::Timeout)?
}
