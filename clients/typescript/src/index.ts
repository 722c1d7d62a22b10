export { type Auth, type Credential, bearer, telegram, telegramWebApp, authorization, subprotocols } from "./auth.js";
export { type ChatClient, type ChatClientOptions, type ReplyOptions, createChatClient } from "./client.js";
export { ApiError, type ErrorBody, unwrap } from "./errors.js";
export { type Message, type ReplyEvent, type ReplyPart, ReplyStream, type ReplyStreamOptions, type ToolCall } from "./reply.js";
export type { components, paths } from "./schema.js";
export { type Change, ChatSocket, type Memory, type ChatSocketOptions, type ClientFrame, type ServerEvents, type ServerFrame, type Session, type SocketEvents } from "./socket.js";
export { parseSse, type SseEvent } from "./sse.js";
