#!/usr/bin/env node
// `cdk synth` / `cdk deploy` entry point. The Rust binaries come from
// `cargo lambda build --release --arm64` (target/lambda/<function>/bootstrap); pass
// `-c lambdaDir=<dir>` to take them from elsewhere (and `-c templateFile=<file>` for another template).

import * as path from "node:path";

import { App } from "aws-cdk-lib";

import { ChatStack } from "../lib/chat-stack";

const app = new App();
const lambdaDir = app.node.tryGetContext("lambdaDir") ?? path.join(__dirname, "..", "..", "..", "target", "lambda");
new ChatStack(app, "ChatBackend", {
  lambdaDir: path.resolve(lambdaDir),
  templateFile: app.node.tryGetContext("templateFile"),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
