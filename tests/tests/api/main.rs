//! Black-box tests of the whole API against DynamoDB Local: one binary, one module per group.
//! With no `AWS_ENDPOINT_URL_DYNAMODB`, the harness starts DynamoDB Local itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod auth;
mod changes;
mod characters;
mod common;
mod cors;
mod crash;
mod dev_server;
mod errors;
mod events;
mod extraction;
mod faults;
mod jwks;
mod leases;
mod limits;
mod local_data;
mod me;
mod memories;
mod messages;
mod openapi;
mod realtime;
mod realtime_aws;
mod replies;
mod retention;
mod schema;
mod scripted_bedrock;
mod scripted_model;
mod security;
mod sessions;
mod telegram;
mod tools;
mod web;
