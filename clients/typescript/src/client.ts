// The client: every route typed from openapi.json through openapi-fetch, plus what OpenAPI cannot
// describe — a reply streamed over SSE and the realtime socket.

import createClient, { type Client } from "openapi-fetch";

import { type Auth, authorization, resolve } from "./auth.js";
import { ApiError, unwrap } from "./errors.js";
import { type Message, ReplyStream, type ReplyStreamOptions, type ReplyTransport } from "./reply.js";
import type { components, paths } from "./schema.js";
import { ChatSocket, type ChatSocketOptions } from "./socket.js";

type Schemas = components["schemas"];

export interface ChatClientOptions {
    /** The API's base URL: `http://127.0.0.1:3000` locally, the stack's `ApiUrl` on AWS. */
    baseUrl: string;
    auth: Auth;
    /**
     * Where replies stream from: the stack's `ReplyStreamUrl` on AWS (the HTTP API buffers
     * responses); the base URL when not given (the dev server streams everything).
     */
    streamUrl?: string;
    /** The chat socket: `<baseUrl>/v1/ws` (as ws/wss) when not given; the stack's `WebSocketUrl` on AWS. */
    socketUrl?: string;
    fetch?: typeof fetch;
    WebSocket?: typeof WebSocket;
}

export interface ReplyOptions extends ReplyStreamOptions {
    /** Keeps a retried request from generating twice; one is made when not given. */
    idempotencyKey?: string;
}

export type ChatClient = ReturnType<typeof createChatClient>;

export function createChatClient(options: ChatClientOptions) {
    const baseUrl = options.baseUrl.replace(/\/+$/, "");
    const streamUrl = (options.streamUrl ?? baseUrl).replace(/\/+$/, "");
    const socketUrl = options.socketUrl ?? `${baseUrl.replace(/^http/, "ws")}/v1/ws`;
    const fetcher = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
    const api: Client<paths> = createClient<paths>({ baseUrl, fetch: fetcher });
    api.use({
        async onRequest({ request }) {
            request.headers.set("Authorization", authorization(await resolve(options.auth)));
            return request;
        },
    });

    async function post(path: string, body: unknown, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
        return fetcher(`${streamUrl}${path}`, {
            method: "POST",
            headers: { ...headers, "Content-Type": "application/json", Authorization: authorization(await resolve(options.auth)) },
            body: JSON.stringify(body),
            signal: signal ?? null,
        });
    }

    async function resume(sessionId: string, seq: number, lastEventId: number, signal: AbortSignal): Promise<Response> {
        const headers: Record<string, string> = { Accept: "text/event-stream", Authorization: authorization(await resolve(options.auth)) };
        if (lastEventId > 0) headers["Last-Event-ID"] = String(lastEventId);
        return fetcher(`${streamUrl}/v1/sessions/${encodeURIComponent(sessionId)}/messages/${seq}/stream`, { headers, signal });
    }

    async function cancel(sessionId: string, seq: number): Promise<Message> {
        return unwrap(await api.POST("/v1/sessions/{id}/messages/{seq}/cancel", { params: { path: { id: sessionId, seq } } }));
    }

    async function answer(sessionId: string, seq: number, toolCallId: string, output: unknown): Promise<Message> {
        return unwrap(
            await api.POST("/v1/sessions/{id}/messages/{seq}/tool-results", {
                params: { path: { id: sessionId, seq } },
                body: { tool_call_id: toolCallId, output: output as never },
            }),
        );
    }

    async function getMessage(sessionId: string, seq: number): Promise<Message> {
        return unwrap(await api.GET("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: sessionId, seq } } }));
    }

    function transport(sessionId: string, first: (signal: AbortSignal) => Promise<Response>, retryFirst: boolean): ReplyTransport {
        return {
            open(at, attempt, signal) {
                if (at) return resume(sessionId, at.seq, at.lastEventId, signal);
                if (attempt > 0 && !retryFirst) throw new Error("the connection dropped before the reply started");
                return first(signal);
            },
            cancel: (seq) => cancel(sessionId, seq),
            answer: (seq, toolCallId, output) => answer(sessionId, seq, toolCallId, output),
        };
    }

    return {
        /** Every route, typed: `api.GET("/v1/sessions/{id}", { params: { path: { id } } })`. */
        api,

        /**
         * `POST /v1/sessions/{id}/replies` as a stream: the user's `content` (if any) is appended and
         * the model's answer arrives as `reply.*` events. A dropped connection resumes by itself.
         * With `mode: "all"` each agent's reply follows in turn (see `ReplyStream`).
         */
        reply(sessionId: string, body: Schemas["CreateReply"], replyOptions: ReplyOptions = {}): ReplyStream {
            const key = replyOptions.idempotencyKey ?? crypto.randomUUID();
            const headers = { Accept: "text/event-stream", "Idempotency-Key": key };
            const path = `/v1/sessions/${encodeURIComponent(sessionId)}/replies`;
            // With the key, a retry before the reply started attaches to it instead of generating again.
            const shape = { round: body.mode === "all" };
            return new ReplyStream(transport(sessionId, (signal) => post(path, body, headers, signal), true), replyOptions, null, shape);
        },

        /** `POST …/messages/{seq}/regenerate` as a stream: a new variant of the latest reply. */
        regenerate(sessionId: string, seq: number, body: Schemas["Regenerate"] = {}, replyOptions: ReplyStreamOptions = {}): ReplyStream {
            const path = `/v1/sessions/${encodeURIComponent(sessionId)}/messages/${seq}/regenerate`;
            return new ReplyStream(transport(sessionId, (signal) => post(path, body, { Accept: "text/event-stream" }, signal), false), replyOptions);
        },

        /** `GET …/messages/{seq}/stream`: a reply in progress (or ended) from the event after `lastEventId`. */
        stream(sessionId: string, seq: number, streamOptions: ReplyStreamOptions & { lastEventId?: number } = {}): ReplyStream {
            const at = { seq, lastEventId: streamOptions.lastEventId ?? 0 };
            return new ReplyStream(transport(sessionId, (signal) => resume(sessionId, seq, 0, signal), false), streamOptions, at);
        },

        /** `POST …/messages/{seq}/cancel`: the reply ends `cancelled` with its text so far. */
        cancel,

        /**
         * `POST …/messages/{seq}/tool-results`: a client tool's output for one call of a paused reply
         * (`requires_action`); the last answer resumes it. `ReplyStreamOptions.onToolCall` does this
         * for a stream.
         */
        answerToolCall: answer,

        /** The realtime socket of one chat (see `ChatSocket`). */
        socket(sessionId: string, socketOptions: Partial<Omit<ChatSocketOptions, "sessionId" | "auth">> = {}): ChatSocket {
            return new ChatSocket({
                url: socketUrl,
                fetchMessage: (seq) => getMessage(sessionId, seq),
                ...(options.WebSocket ? { WebSocket: options.WebSocket } : {}),
                ...socketOptions,
                sessionId,
                auth: options.auth,
            });
        },
    };
}

export { ApiError };
