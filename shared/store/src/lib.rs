//! `store`: DynamoDB. The only code that knows table names, key layout, indexes and
//! `AttributeValue` mapping; items map to `domain` types inside it and never leave as maps.
//!
//! Architecture invariant: this crate depends on `domain` and the AWS SDK only — never on the
//! HTTP edge (`shared`), the service, or a model provider. It takes preconditions and reports
//! typed misses; which rule a miss breaks, and in what words the user hears it, is decided above.

mod bulk;
mod characters;
mod connections;
mod erasure;
mod export;
mod gate;
pub mod hints;
mod item;
mod limits;
mod memories;
mod messages;
mod retention;
pub mod schema;
mod sessions;
pub mod stream;
mod tools;
mod tx;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, timeout::TimeoutConfig};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

pub use self::schema::TableNames;
use domain::{Clock, InputError, LimitsConfig, Refusal, Timestamp};

pub use self::characters::CatalogRead;
pub use self::erasure::Erasure;
pub use self::export::ExportPage;
pub use self::limits::ChoreReport;
pub use self::memories::{ExtractionBatch, ExtractionWrite, MAX_PER_SCOPE, MemoryPage, RankedMemory, SummaryGuard};
pub use self::messages::{
    Answered, Appended, Checkpoint, ContextLog, LeasedReply, MessageOrder, MessageQuery, MessageSlice, ReplyEnd,
};
pub use self::sessions::ChatClaim;

type Source = Box<dyn StdError + Send + Sync>;

/// What went wrong in storage: the item is not there (for this caller), a rule enforced in the
/// write refused it, or DynamoDB failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A precondition the caller set does not hold for the item as stored.
    #[error("the stored item does not meet the precondition: {0:?}")]
    Miss(Miss),
    #[error("DynamoDB is unavailable")]
    Unavailable(#[source] Source),
    #[error("DynamoDB request failed")]
    Internal(#[source] Source),
}

/// A precondition that did not hold. The store reports which; the service decides which rule
/// that breaks and how the user hears it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// The message is not the session's latest, or not an assistant's.
    NotLatestReply,
    /// The reply is still streaming.
    StillStreaming,
    /// The message was not produced by a model.
    NotGenerated,
    /// The message is not of the role the edit was asked for.
    NotEditable,
    /// The generation was ended, regenerated or deleted while it was being written.
    Replaced,
}

impl From<InputError> for StoreError {
    fn from(error: InputError) -> Self {
        Self::Refused(Refusal::Invalid(error))
    }
}

#[derive(Debug)]
struct CorruptItem {
    kind: &'static str,
    attribute: String,
}

impl fmt::Display for CorruptItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stored {} item has a missing or malformed `{}`", self.kind, self.attribute)
    }
}

impl StdError for CorruptItem {}

impl StoreError {
    pub fn internal(source: impl Into<Source>) -> Self {
        Self::Internal(source.into())
    }

    pub(crate) fn corrupt(kind: &'static str, attribute: &str) -> Self {
        Self::Internal(Box::new(CorruptItem { kind, attribute: attribute.to_owned() }))
    }

    /// Classifies an SDK failure: network, timeout and throttling are `Unavailable` (503).
    pub(crate) fn from_sdk<E>(error: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let unavailable = match &error {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            // Throttling, and any failure on DynamoDB's side (a 5xx, whatever its code): retry.
            SdkError::ServiceError(service) => {
                service.raw().status().is_server_error()
                    || matches!(
                        service.err().code(),
                        Some(
                            "ProvisionedThroughputExceededException"
                                | "ThrottlingException"
                                | "RequestLimitExceeded"
                                | "InternalServerError"
                                | "ServiceUnavailable"
                                | "TransactionInProgressException"
                        )
                    )
            }
            _ => false,
        };
        if unavailable { Self::Unavailable(Box::new(error)) } else { Self::Internal(Box::new(error)) }
    }
}

impl Store {
    /// Sends an `Update` built for a transaction as a write of its own.
    pub(crate) fn update_item(
        &self,
        update: aws_sdk_dynamodb::types::Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
    }

    /// Sends a `Put` built for a transaction as a write of its own.
    pub(crate) fn put_item(
        &self,
        put: aws_sdk_dynamodb::types::Put,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        self.client
            .put_item()
            .table_name(put.table_name)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values)
    }
}

/// Whether an `UpdateItem` failed only because its condition did not hold.
pub(crate) fn condition_failed(error: &SdkError<UpdateItemError, HttpResponse>) -> bool {
    error.as_service_error().is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

/// An `UpdateItem` failure: a failed condition means `on_condition()`, anything else is
/// classified as usual.
pub(crate) fn update_failed(
    error: SdkError<UpdateItemError, HttpResponse>,
    on_condition: impl FnOnce() -> StoreError,
) -> StoreError {
    if condition_failed(&error) { on_condition() } else { StoreError::from_sdk(error) }
}

/// Builds the DynamoDB client with bounded timeouts, so an unreachable database is a quick 503.
pub fn client(sdk_config: &SdkConfig) -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build();
    let config = aws_sdk_dynamodb::config::Builder::from(sdk_config).timeout_config(timeouts).build();
    Client::from_conf(config)
}

/// Counts every call the client makes — once, however many attempts its retries take — so a
/// count shows what the code asks of DynamoDB, whatever a busy machine's timeouts did.
#[derive(Debug)]
struct CallCounter(Arc<AtomicU64>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Access to every table; cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: Client,
    tables: Arc<TableNames>,
    clock: Arc<dyn Clock>,
    calls: Arc<AtomicU64>,
    seq_hints: Arc<sessions::SeqHints>,
    gates: Arc<gate::WriteGates>,
    limits: Arc<LimitsConfig>,
    limit_caches: Arc<limits::LimitCaches>,
}

impl Store {
    pub fn new(client: Client, tables: TableNames, limits: LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        let calls = Arc::new(AtomicU64::new(0));
        let config = client.config().to_builder().interceptor(CallCounter(calls.clone())).build();
        Self {
            client: Client::from_conf(config),
            tables: Arc::new(tables),
            clock,
            calls,
            seq_hints: Arc::default(),
            gates: Arc::default(),
            limits: Arc::new(limits),
            limit_caches: Arc::default(),
        }
    }

    /// DynamoDB calls made by this store so far (each once, whatever its retries).
    pub fn dynamodb_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    pub fn limits_config(&self) -> &LimitsConfig {
        &self.limits
    }

    /// Opens the connection (DNS, TCP, TLS) during init so the first request does not pay for it.
    pub async fn warm_up(&self) {
        let result = self
            .client
            .get_item()
            .table_name(&self.tables.sessions)
            .key(schema::sessions::USER_ID, item::s("#warm-up"))
            .key(schema::sessions::SESSION_ID, item::s("#warm-up"))
            .send()
            .await;
        if let Err(error) = result {
            tracing::warn!(error = %StoreError::from_sdk(error), "DynamoDB warm-up failed; continuing");
        }
    }
}
