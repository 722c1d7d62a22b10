//! The local kit: what a local run — the dev server, the test suite, the benchmark — starts and
//! reads. DynamoDB Local and the local model started on demand, the tables created from
//! `template.yaml`, dev tokens and Telegram init data, the sample API Gateway events. Never deployed.

pub mod dynamodb_local;
pub mod events;
pub mod local_model;
pub mod tables;
pub mod telegram;
pub mod template;
pub mod token;
