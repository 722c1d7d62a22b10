// The chat backend as a CDK stack: the same tables, functions, routes, schedule and IAM as
// ../template.yaml. `scripts/check-infra.sh` synthesizes this stack and fails on any drift.

import * as fs from "node:fs";
import * as path from "node:path";

import {
  Aws,
  CfnOutput,
  CfnParameter,
  CfnParameterProps,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  StackProps,
} from "aws-cdk-lib";
import { DynamoEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import {
  CfnApi,
  CfnIntegration,
  CfnRoute,
  CfnStage,
  CorsHttpMethod,
  HttpApi,
  HttpMethod,
} from "aws-cdk-lib/aws-apigatewayv2";
import { HttpLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import { AttributeType, BillingMode, CfnTable, ProjectionType, StreamViewType, Table } from "aws-cdk-lib/aws-dynamodb";
import { Rule, Schedule } from "aws-cdk-lib/aws-events";
import { LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { PolicyStatement } from "aws-cdk-lib/aws-iam";
import {
  Architecture,
  CfnFunction,
  CfnPermission,
  CfnUrl,
  Code,
  Function,
  FunctionUrlAuthType,
  HttpMethod as UrlMethod,
  InvokeMode,
  LoggingFormat,
  Runtime,
  StartingPosition,
} from "aws-cdk-lib/aws-lambda";
import { Construct } from "constructs";

export interface ChatStackProps extends StackProps {
  /** Where `cargo lambda build --release --arm64` put the binaries: `<lambdaDir>/<function>/bootstrap`. */
  readonly lambdaDir: string;
}

/** DynamoDB actions by name: `ddb("GetItem", "Query")`. Each function gets only the ones it uses. */
const ddb = (...actions: string[]) => actions.map((action) => `dynamodb:${action}`);

interface Grant {
  table: Table;
  actions: string[];
  indexes?: boolean;
}

interface FunctionSpec {
  id: string;
  binary: string;
  timeout: Duration;
  grants: Grant[];
  routes: [HttpMethod, string][];
  /** Generates replies: the LLM_* settings and the Bedrock grant. */
  model?: boolean;
  /** Served by a response-streaming function URL (its logical id: `<id>Url`). */
  streamingUrl?: boolean;
  /** Posts to the chat sockets: WEBSOCKET_ENDPOINT and the `@connections` grant. */
  sockets?: boolean;
  /** DynamoDB Streams it consumes. */
  streams?: Table[];
}

/** The stack's parameters, as template.yaml declares them, and the environment variable each sets. */
const PARAMETERS: [string, string | undefined, CfnParameterProps][] = [
  ["JwtSecret", "JWT_SECRET", { type: "String", noEcho: true, default: "", description: "HS256 shared secret (at least 32 bytes). Set exactly one of JwtSecret, JwtPublicKey, JwtJwksUrl." }],
  ["JwtPublicKey", "JWT_PUBLIC_KEY", { type: "String", default: "", description: "RSA, EC or Ed25519 public key in PEM form (newlines as \\n). Set exactly one of JwtSecret, JwtPublicKey, JwtJwksUrl." }],
  ["JwtJwksUrl", "JWT_JWKS_URL", { type: "String", default: "", description: "The identity provider's JWKS URL (Cognito, Auth0, Clerk, Supabase, Keycloak, Firebase). Set exactly one of JwtSecret, JwtPublicKey, JwtJwksUrl." }],
  ["CorsAllowedOrigins", undefined, { type: "CommaDelimitedList", default: "*", description: "Browser origins that may call the API (https://app.example.com,https://t.me), or * for any. Set your web app's origins in production." }],
  ["RetentionDays", "RETENTION_DAYS", { type: "Number", default: 30, description: "Days a deleted or hidden message, session or memory stays stored before DynamoDB's TTL removes it." }],
  ["JwtIssuer", "JWT_ISSUER", { type: "String", default: "", description: "Required `iss` claim; empty to skip the check." }],
  ["JwtAudience", "JWT_AUDIENCE", { type: "String", default: "", description: "Required `aud` claim; empty to skip the check." }],
  ["TelegramBotToken", "TELEGRAM_BOT_TOKEN", { type: "String", noEcho: true, default: "", description: "Bot token whose Mini App may sign users in with `Authorization: tma <initData>`; empty disables it." }],
  ["TelegramInitDataMaxAgeSecs", "TELEGRAM_INIT_DATA_MAX_AGE_SECS", { type: "Number", default: 86400, description: "How old a Mini App's init data (auth_date) may be." }],
  ["DailyMessageQuota", "DAILY_MESSAGE_QUOTA", { type: "Number", default: 50, description: "User messages per day without a subscription." }],
  ["RateLimitAppendPerMin", "RATE_LIMIT_APPEND_PER_MIN", { type: "Number", default: 10, description: "Appends carrying user messages and reply turns (POST …/replies), per user per minute (0 disables); assistant messages a caller appends are never rate-limited." }],
  ["RateLimitRegeneratePerMin", "RATE_LIMIT_REGENERATE_PER_MIN", { type: "Number", default: 5, description: "Regenerated replies per user per minute (0 disables)." }],
  ["RateLimitReadPerMin", "RATE_LIMIT_READ_PER_MIN", { type: "Number", default: 30, description: "Message reads per user per minute (0 disables)." }],
  ["RateLimitOtherPerMin", "RATE_LIMIT_OTHER_PER_MIN", { type: "Number", default: 60, description: "Other requests per user per minute (0 disables)." }],
  ["ModelPrices", "MODEL_PRICES", { type: "String", default: "", description: "USD per million input/output tokens, e.g. gpt-4o-mini=0.15/0.60,claude-3-5-haiku=0.80/4" }],
  ["LlmProvider", "LLM_PROVIDER", { type: "String", allowedValues: ["none", "openai", "bedrock"], default: "none", description: "Where replies come from: an OpenAI-compatible endpoint (LlmBaseUrl), Amazon Bedrock (the function's role), or none (replies answer 503)." }],
  ["LlmBaseUrl", "LLM_BASE_URL", { type: "String", default: "", description: "OpenAI-compatible base URL, e.g. https://api.openai.com/v1 (provider openai)." }],
  ["LlmApiKey", "LLM_API_KEY", { type: "String", noEcho: true, default: "", description: "The OpenAI-compatible endpoint's API key (provider openai); empty if it needs none." }],
  ["LlmModel", "LLM_MODEL", { type: "String", default: "", description: "The default model (a Bedrock model id for provider bedrock, e.g. anthropic.claude-3-5-haiku-20241022-v1:0)." }],
  ["LlmModels", "LLM_MODELS", { type: "String", default: "", description: "Other models a request may name, comma-separated." }],
  ["LlmTimeoutSecs", "LLM_TIMEOUT_SECS", { type: "Number", default: 25, description: "Seconds the model may take to start answering, and between two pieces of the answer." }],
  ["LlmContextTokens", "LLM_CONTEXT_TOKENS", { type: "Number", default: 8192, description: "The model's context window in tokens." }],
  ["LlmMaxTokens", "LLM_MAX_TOKENS", { type: "Number", default: 1024, description: "A reply's max_tokens, and the most a request may ask for." }],
  ["DeletionProtection", undefined, { type: "String", allowedValues: ["true", "false"], default: "true", description: "DynamoDB deletion protection on every table." }],
];

/** CORS as the API answers it (the same lists as shared/src/http.rs and template.yaml). */
const CORS = {
  methods: ["GET", "POST", "PUT", "PATCH", "DELETE"] as const,
  allowHeaders: ["authorization", "content-type", "idempotency-key", "last-event-id"],
  exposeHeaders: [
    "x-request-id", "x-quota-limit", "x-quota-remaining", "x-quota-reset", "x-ratelimit-limit", "x-ratelimit-remaining",
    "x-ratelimit-reset", "ratelimit", "ratelimit-policy", "idempotent-replayed", "retry-after", "www-authenticate",
  ],
  maxAge: Duration.seconds(3600),
};

export class ChatStack extends Stack {
  constructor(scope: Construct, id: string, props: ChatStackProps) {
    super(scope, id, props);

    const parameters: Record<string, CfnParameter> = {};
    const parameterEnvironment: Record<string, string> = {};
    // The model's settings go to the functions that generate replies only.
    const modelEnvironment: Record<string, string> = {};
    for (const [name, variable, options] of PARAMETERS) {
      parameters[name] = new CfnParameter(this, name, options);
      if (!variable) continue;
      const target = variable.startsWith("LLM_") ? modelEnvironment : parameterEnvironment;
      target[variable] = parameters[name].valueAsString;
    }
    const deletionProtection = parameters.DeletionProtection;

    const table = (
      logicalId: string,
      partitionKey: string,
      sortKey?: [string, AttributeType],
      ttl?: string,
      stream?: StreamViewType,
    ) => {
      const created = new Table(this, logicalId, {
        stream,
        partitionKey: { name: partitionKey, type: AttributeType.STRING },
        sortKey: sortKey && { name: sortKey[0], type: sortKey[1] },
        billingMode: BillingMode.PAY_PER_REQUEST,
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        timeToLiveAttribute: ttl,
        // Deletion protection (a parameter, on by default) is what keeps data; with it off, deleting
        // the stack deletes the tables, as with template.yaml.
        removalPolicy: RemovalPolicy.DESTROY,
      });
      const cfn = created.node.defaultChild as CfnTable;
      cfn.overrideLogicalId(logicalId);
      cfn.addPropertyOverride("DeletionProtectionEnabled", deletionProtection.valueAsString);
      return created;
    };

    // The realtime fan-out reads the sessions' and messages' streams.
    const changes = StreamViewType.NEW_AND_OLD_IMAGES;
    const sessions = table("SessionsTable", "user_id", ["session_id", AttributeType.STRING], "expires_at", changes);
    sessions.addGlobalSecondaryIndex({
      indexName: "by_activity",
      partitionKey: { name: "list_pk", type: AttributeType.STRING },
      sortKey: { name: "activity_at", type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    const messages = table("MessagesTable", "session_id", ["seq", AttributeType.NUMBER], "expires_at", changes);
    messages.addLocalSecondaryIndex({
      indexName: "by_rev",
      sortKey: { name: "rev", type: AttributeType.NUMBER },
      projectionType: ProjectionType.KEYS_ONLY,
    });
    const idempotency = table("IdempotencyTable", "scope", undefined, "expires_at");
    const memories = table("MemoriesTable", "user_id", ["item", AttributeType.STRING], "expires_at");
    for (const [indexName, sortKey] of [
      ["by_rank", "rank"],
      ["by_id", "memory_id"],
    ]) {
      memories.addLocalSecondaryIndex({
        indexName,
        sortKey: { name: sortKey, type: AttributeType.STRING },
        projectionType: ProjectionType.ALL,
      });
    }
    const characters = table("CharactersTable", "character_id");
    const connections = table("ConnectionsTable", "connection_id", undefined, "expires_at");
    connections.addGlobalSecondaryIndex({
      indexName: "by_session",
      partitionKey: { name: "session_id", type: AttributeType.STRING },
      sortKey: { name: "connection_id", type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    const limits = table("LimitsTable", "user_id", ["item", AttributeType.STRING], "expires_at");
    limits.addGlobalSecondaryIndex({
      indexName: "by_chore",
      partitionKey: { name: "chore_day", type: AttributeType.STRING },
      sortKey: { name: "chore_key", type: AttributeType.STRING },
      projectionType: ProjectionType.KEYS_ONLY,
    });

    const origins = parameters.CorsAllowedOrigins.valueAsList;
    const api = new HttpApi(this, "ChatApi", {
      corsPreflight: {
        allowOrigins: origins,
        allowMethods: CORS.methods.map((method) => CorsHttpMethod[method]),
        allowHeaders: CORS.allowHeaders,
        exposeHeaders: CORS.exposeHeaders,
        maxAge: CORS.maxAge,
        allowCredentials: false,
      },
    });
    (api.node.defaultChild as CfnApi).overrideLogicalId("ChatApi");

    // The chat socket: API Gateway's WebSocket API (L1, as template.yaml writes it). Every frame
    // goes to $default; the function reads the event name itself.
    const webSocketApi = new CfnApi(this, "WebSocketApi", {
      name: `${Aws.STACK_NAME}-realtime`,
      protocolType: "WEBSOCKET",
      routeSelectionExpression: "$request.body.event",
    });
    webSocketApi.overrideLogicalId("WebSocketApi");
    const webSocketStage = new CfnStage(this, "WebSocketStage", {
      apiId: webSocketApi.ref,
      stageName: "live",
      autoDeploy: true,
    });
    webSocketStage.overrideLogicalId("WebSocketStage");
    const socketEndpoint = Fn.sub(
      "https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${WebSocketStage}",
    );
    const manageConnections = new PolicyStatement({
      actions: ["execute-api:ManageConnections"],
      resources: [Fn.sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*")],
    });

    const environment = {
      SESSIONS_TABLE: sessions.tableName,
      MESSAGES_TABLE: messages.tableName,
      IDEMPOTENCY_TABLE: idempotency.tableName,
      MEMORIES_TABLE: memories.tableName,
      LIMITS_TABLE: limits.tableName,
      CHARACTERS_TABLE: characters.tableName,
      CONNECTIONS_TABLE: connections.tableName,
      ...parameterEnvironment,
    };

    const { GET, POST, PUT, PATCH, DELETE } = HttpMethod;
    const session = "/v1/sessions/{id}";
    const admin = "/v1/admin/users/{user_id}";
    const messagesGrants: Grant[] = [
      { table: sessions, actions: ddb("GetItem", "UpdateItem", "ConditionCheckItem") },
      { table: messages, actions: ddb("GetItem", "BatchGetItem", "PutItem", "UpdateItem", "Query"), indexes: true },
      { table: idempotency, actions: ddb("PutItem") },
      { table: memories, actions: ddb("GetItem", "Query"), indexes: true },
      { table: limits, actions: ddb("GetItem", "PutItem", "UpdateItem") },
      { table: characters, actions: ddb("GetItem") },
    ];
    const specs: FunctionSpec[] = [
      {
        id: "SessionsFunction",
        binary: "sessions",
        timeout: Duration.seconds(15),
        grants: [
          { table: sessions, actions: ddb("GetItem", "PutItem", "UpdateItem", "Query"), indexes: true },
          // A character chat starts with its greeting, and is recorded in the limits partition.
          { table: messages, actions: ddb("Query", "PutItem") },
          { table: limits, actions: ddb("GetItem", "PutItem", "UpdateItem") },
          // The catalog snapshot (Scan), lookups, and admin writes with the version bump.
          { table: characters, actions: ddb("GetItem", "PutItem", "UpdateItem", "Scan") },
        ],
        routes: [
          [POST, "/v1/sessions"],
          [GET, "/v1/characters"],
          [GET, "/v1/characters/search"],
          [GET, "/v1/characters/{id}"],
          [GET, "/v1/characters/{id}/session"],
          [GET, "/v1/tags"],
          [GET, "/v1/tags/{category}"],
          [POST, "/v1/admin/characters"],
          [PATCH, "/v1/admin/characters/{id}"],
          [DELETE, "/v1/admin/characters/{id}"],
          [GET, "/v1/sessions"],
          [GET, session],
          [PATCH, session],
          [DELETE, session],
          [POST, `${session}/archive`],
          [POST, `${session}/unarchive`],
        ],
      },
      // The HTTP API buffers responses and ends integrations at 30 s: replies here are answered
      // whole within 29 s. The streaming function URL below serves the same routes streamed.
      {
        id: "MessagesFunction",
        binary: "messages",
        timeout: Duration.seconds(29),
        grants: messagesGrants,
        routes: [
          [POST, `${session}/messages`],
          [GET, `${session}/messages`],
          [POST, `${session}/messages/batch`],
          [GET, `${session}/changes`],
          [GET, `${session}/messages/{seq}`],
          [PATCH, `${session}/messages/{seq}`],
          [DELETE, `${session}/messages/{seq}`],
          [POST, `${session}/forget-recent`],
          [POST, `${session}/new-scene`],
          [POST, `${session}/reset`],
          [GET, `${session}/context`],
          [POST, `${session}/replies`],
          [POST, `${session}/messages/{seq}/regenerate`],
          [POST, `${session}/messages/{seq}/cancel`],
          [GET, `${session}/messages/{seq}/stream`],
          [GET, `${session}/messages/{seq}/variants`],
        ],
        model: true,
      },
      {
        id: "ReplyStreamFunction",
        binary: "messages-stream",
        timeout: Duration.seconds(300),
        grants: messagesGrants,
        routes: [],
        model: true,
        streamingUrl: true,
      },
      {
        id: "MemoriesFunction",
        binary: "memories",
        timeout: Duration.seconds(15),
        grants: [
          { table: sessions, actions: ddb("GetItem", "UpdateItem", "ConditionCheckItem") },
          {
            table: memories,
            actions: ddb("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"),
            indexes: true,
          },
          { table: limits, actions: ddb("UpdateItem") },
        ],
        routes: [
          [POST, "/v1/memories"],
          [GET, "/v1/memories"],
          [DELETE, "/v1/memories"],
          [GET, "/v1/memories/{id}"],
          [PATCH, "/v1/memories/{id}"],
          [DELETE, "/v1/memories/{id}"],
        ],
      },
      {
        id: "LimitsFunction",
        binary: "limits",
        timeout: Duration.seconds(15),
        // Erasure (DELETE /v1/me) deletes the caller's items in every table; export reads them.
        grants: [
          { table: limits, actions: ddb("GetItem", "UpdateItem", "Query", "BatchWriteItem") },
          { table: sessions, actions: ddb("GetItem", "Query", "BatchWriteItem") },
          { table: messages, actions: ddb("Query", "BatchWriteItem") },
          { table: memories, actions: ddb("Query", "BatchWriteItem") },
          { table: idempotency, actions: ddb("BatchWriteItem") },
        ],
        routes: [
          [GET, "/v1/limits"],
          [PATCH, "/v1/limits/profile"],
          [GET, "/v1/usage"],
          [PUT, `${admin}/subscription`],
          [DELETE, `${admin}/subscription`],
          [GET, `${admin}/limits`],
          [GET, "/v1/me"],
          [PATCH, "/v1/me"],
          [POST, "/v1/me/confirm-adult"],
          [DELETE, "/v1/me"],
          [GET, "/v1/me/export"],
        ],
      },
      {
        // The WebSocket API's handler: connect checks, frames; send_message goes to the worker.
        id: "RealtimeFunction",
        binary: "realtime",
        timeout: Duration.seconds(15),
        grants: [
          { table: sessions, actions: ddb("GetItem") },
          // sync: the change feed.
          { table: messages, actions: ddb("BatchGetItem", "Query"), indexes: true },
          { table: connections, actions: ddb("GetItem", "PutItem", "DeleteItem", "Query"), indexes: true },
        ],
        routes: [],
        sockets: true,
      },
      {
        // A send_message frame, invoked asynchronously: the reply streams for up to 5 minutes.
        id: "RealtimeReplyFunction",
        binary: "realtime-reply",
        timeout: Duration.seconds(300),
        grants: [
          ...messagesGrants,
          { table: connections, actions: ddb("GetItem", "DeleteItem", "Query"), indexes: true },
        ],
        routes: [],
        model: true,
        sockets: true,
      },
      {
        // The stream fan-out: every change to a session's log or to the session, to its sockets.
        id: "FanoutFunction",
        binary: "fanout",
        timeout: Duration.seconds(30),
        grants: [{ table: connections, actions: ddb("DeleteItem", "Query"), indexes: true }],
        routes: [],
        sockets: true,
        streams: [messages, sessions],
      },
      {
        // The hourly job: its own function, so only it has the long timeout (it pages through a
        // day of chores).
        id: "JobFunction",
        binary: "job",
        timeout: Duration.seconds(300),
        grants: [
          { table: limits, actions: ddb("GetItem", "PutItem", "UpdateItem", "Query"), indexes: true },
          // Retention sweeps: read the session, stamp its hidden messages and left memories.
          { table: sessions, actions: ddb("GetItem") },
          { table: messages, actions: ddb("Query", "UpdateItem") },
          { table: memories, actions: ddb("Query", "UpdateItem") },
          // Each finished day's messages are added to its characters' counters.
          { table: characters, actions: ddb("GetItem", "UpdateItem") },
        ],
        routes: [],
      },
    ];

    const functions: Record<string, Function> = {};
    for (const spec of specs) {
      const fn = new Function(this, spec.id, {
        runtime: Runtime.PROVIDED_AL2023,
        architecture: Architecture.ARM_64,
        handler: "bootstrap",
        code: Code.fromAsset(binaryDir(props.lambdaDir, spec.binary), { exclude: ["*.zip"] }),
        memorySize: 256,
        timeout: spec.timeout,
        loggingFormat: LoggingFormat.JSON,
        environment: {
          ...environment,
          ...(spec.model ? modelEnvironment : {}),
          ...(spec.sockets ? { WEBSOCKET_ENDPOINT: socketEndpoint } : {}),
        },
      });
      (fn.node.defaultChild as CfnFunction).overrideLogicalId(spec.id);
      for (const grant of spec.grants) {
        const resources = [grant.table.tableArn];
        if (grant.indexes) resources.push(`${grant.table.tableArn}/index/*`);
        fn.addToRolePolicy(new PolicyStatement({ actions: grant.actions, resources }));
      }
      if (spec.model) {
        const model = parameters.LlmModel.valueAsString;
        fn.addToRolePolicy(
          new PolicyStatement({
            actions: ["bedrock:InvokeModelWithResponseStream"],
            resources: [`arn:${Aws.PARTITION}:bedrock:${Aws.REGION}::foundation-model/${model}`],
          }),
        );
      }
      if (spec.sockets) {
        fn.addToRolePolicy(manageConnections);
      }
      for (const table of spec.streams ?? []) {
        fn.addEventSource(
          new DynamoEventSource(table, {
            startingPosition: StartingPosition.LATEST,
            batchSize: 100,
            maxBatchingWindow: Duration.seconds(0),
            retryAttempts: 2,
            bisectBatchOnError: true,
          }),
        );
      }
      if (spec.streamingUrl) {
        const url = fn.addFunctionUrl({
          authType: FunctionUrlAuthType.NONE,
          invokeMode: InvokeMode.RESPONSE_STREAM,
          cors: {
            allowedOrigins: origins,
            allowedMethods: CORS.methods.map((method) => UrlMethod[method]),
            allowedHeaders: CORS.allowHeaders,
            exposedHeaders: CORS.exposeHeaders,
            maxAge: CORS.maxAge,
            allowCredentials: false,
          },
        });
        (url.node.defaultChild as CfnUrl).overrideLogicalId(`${spec.id}Url`);
        new CfnOutput(this, "ReplyStreamUrl", {
          description: "Base URL of the streaming function URL (every messages route; replies stream as SSE).",
          value: url.url,
        });
      }
      if (spec.routes.length > 0) {
        const integration = new HttpLambdaIntegration(`${spec.id}Integration`, fn);
        for (const [method, routePath] of spec.routes) {
          api.addRoutes({ path: routePath, methods: [method], integration });
        }
      }
      functions[spec.binary] = fn;
    }

    // The WebSocket API's routes, all to the realtime function; send_message frames are handed on.
    functions.realtime.addEnvironment("REPLY_FUNCTION", functions["realtime-reply"].functionName);
    functions.realtime.addToRolePolicy(
      new PolicyStatement({ actions: ["lambda:InvokeFunction"], resources: [functions["realtime-reply"].functionArn] }),
    );
    const webSocketIntegration = new CfnIntegration(this, "WebSocketIntegration", {
      apiId: webSocketApi.ref,
      integrationType: "AWS_PROXY",
      integrationUri: Fn.sub(
        "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${RealtimeFunction.Arn}/invocations",
      ),
    });
    webSocketIntegration.overrideLogicalId("WebSocketIntegration");
    for (const [id, routeKey] of [
      ["WebSocketConnectRoute", "$connect"],
      ["WebSocketDisconnectRoute", "$disconnect"],
      ["WebSocketDefaultRoute", "$default"],
    ]) {
      const route = new CfnRoute(this, id, {
        apiId: webSocketApi.ref,
        routeKey,
        target: Fn.sub("integrations/${WebSocketIntegration}"),
      });
      route.overrideLogicalId(id);
    }
    const invoke = new CfnPermission(this, "WebSocketInvokePermission", {
      action: "lambda:InvokeFunction",
      functionName: functions.realtime.functionName,
      principal: "apigateway.amazonaws.com",
      sourceArn: Fn.sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*"),
    });
    invoke.overrideLogicalId("WebSocketInvokePermission");
    new CfnOutput(this, "WebSocketUrl", {
      description: "The chat socket (wss://…?session_id=…, the credential as a subprotocol or in the query).",
      value: Fn.sub("wss://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${WebSocketStage}"),
    });

    new Rule(this, "Hourly", {
      schedule: Schedule.expression("rate(1 hour)"),
      description: "Expire subscriptions, finalise finished usage days, close quiet meters.",
      targets: [new LambdaFunction(functions.job)],
    });

    new CfnOutput(this, "ApiUrl", {
      description: "Base URL of the HTTP API.",
      value: `https://${api.apiId}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}`,
    });
  }
}

/** The directory holding one function's `bootstrap`, or a clear error naming the build command. */
function binaryDir(lambdaDir: string, binary: string): string {
  const dir = path.join(lambdaDir, binary);
  if (!fs.existsSync(path.join(dir, "bootstrap"))) {
    throw new Error(
      `${dir}/bootstrap is missing: run \`cargo lambda build --release --arm64\` in the repository root first`,
    );
  }
  return dir;
}
