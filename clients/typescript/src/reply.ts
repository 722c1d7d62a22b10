// A reply streamed as Server-Sent Events: an async iterator of typed events that resumes with
// `Last-Event-ID` when the connection drops mid-reply, and can cancel the reply.

import { ApiError } from "./errors.js";
import type { components } from "./schema.js";
import { parseSse } from "./sse.js";

type Schemas = components["schemas"];
export type Message = Schemas["Message"];

/** The events of `POST …/replies`, `POST …/regenerate` and `GET …/messages/{seq}/stream`; `id` counts them from 1. */
export type ReplyEvent =
    | { readonly id: number; readonly event: "reply.started"; readonly data: Schemas["ReplyStarted"] }
    | { readonly id: number; readonly event: "reply.delta"; readonly data: Schemas["ReplyDelta"] }
    | { readonly id: number; readonly event: "reply.tool_call"; readonly data: Schemas["ReplyToolCall"] }
    | { readonly id: number; readonly event: "reply.tool_result"; readonly data: Schemas["ReplyToolResult"] }
    | { readonly id: number; readonly event: "reply.completed"; readonly data: Schemas["ReplyCompleted"] }
    | { readonly id: number; readonly event: "reply.failed"; readonly data: Schemas["ReplyFailed"] };

const EVENTS = new Set(["reply.started", "reply.delta", "reply.tool_call", "reply.tool_result", "reply.completed", "reply.failed"]);

/** A tool call as the stream reports it. */
export type ToolCall = Schemas["ReplyToolCall"];
/** One part of a reply that called tools: its text, a call, a call's result (`Message.parts`). */
export type ReplyPart = NonNullable<Message["parts"]>[number];

export interface ReplyTransport {
    /**
     * Opens the stream: `resume` is null until the reply's seq is known (the first request, or its
     * retry with the same idempotency key), then the seq and the last event seen, for
     * `GET …/messages/{seq}/stream` with `Last-Event-ID`. `attempt` counts from 0.
     */
    open(resume: { seq: number; lastEventId: number } | null, attempt: number, signal: AbortSignal): Promise<Response>;
    cancel(seq: number): Promise<Message>;
    /** Answers a paused reply's client tool call (`POST …/messages/{seq}/tool-results`). */
    answer(seq: number, toolCallId: string, output: unknown): Promise<Message>;
}

export interface ReplyStreamOptions {
    /** Stops reading (the reply goes on on the server; use `cancel()` to stop it). */
    signal?: AbortSignal;
    /** How many times a dropped connection is resumed before the error is thrown (3). */
    maxResumes?: number;
    /**
     * Called for each `reply.tool_call`. For a call of one of the session's `client` tools, return
     * the tool's output (or a promise of it): the stream answers the call with it and the paused
     * reply resumes on this same stream. Return `undefined` for calls it does not run (the
     * server's own tools, whose results follow on the stream).
     */
    onToolCall?: (call: ToolCall) => unknown;
}

/** What the stream reads: one reply, or a round (`mode: "all"`: each agent's reply in turn). */
export interface ReplyStreamShape {
    round?: boolean;
}

/**
 * One reply's events. Iterate it once (`for await (const event of stream)`); it ends after
 * `reply.completed` or `reply.failed`. A connection that drops before either is resumed from the
 * last event seen, so the events arrive exactly once and in order.
 *
 * A round (`mode: "all"`) brings each agent's reply in turn, each from its own `reply.started`
 * (ids count from 1 again); the stream ends when the server closes it after the last one, and
 * `round` holds every reply as it ended. A connection that drops mid-round resumes the reply it
 * was reading and ends with it: the round's later replies are in the log (sync, the socket).
 */
export class ReplyStream implements AsyncIterable<ReplyEvent> {
    /** The reply's seq, once `reply.started` (or the first resumed event) has told it. */
    seq: number | null;
    /** The id of the last event delivered: what a resume sends as `Last-Event-ID`. */
    lastEventId: number;
    /** The reply's text so far (the deltas joined). */
    text = "";
    /** The reply's message as last reported (`streaming` until the end). */
    message: Message | null = null;
    /** Every reply that ended on this stream, in order (one, or a round's). */
    readonly round: Message[] = [];
    /** The tool calls and results so far, in order, as the events brought them. */
    readonly tools: (Schemas["ReplyToolCall"] | Schemas["ReplyToolResult"])[] = [];

    readonly #transport: ReplyTransport;
    readonly #options: ReplyStreamOptions;
    readonly #abort = new AbortController();
    #started: Promise<number>;
    #markStarted!: (seq: number) => void;
    #iterated = false;
    readonly #isRound: boolean;

    constructor(
        transport: ReplyTransport,
        options: ReplyStreamOptions = {},
        resume: { seq: number; lastEventId: number } | null = null,
        shape: ReplyStreamShape = {},
    ) {
        this.#transport = transport;
        this.#options = options;
        this.#isRound = shape.round ?? false;
        this.seq = resume?.seq ?? null;
        this.lastEventId = resume?.lastEventId ?? 0;
        this.#started = new Promise((resolve) => (this.#markStarted = resolve));
        if (this.seq !== null) this.#markStarted(this.seq);
        options.signal?.addEventListener("abort", () => this.#abort.abort(options.signal?.reason), { once: true });
    }

    async *[Symbol.asyncIterator](): AsyncIterator<ReplyEvent> {
        if (this.#iterated) throw new Error("a ReplyStream can be iterated once");
        this.#iterated = true;
        const maxResumes = this.#options.maxResumes ?? 3;
        let resumes = 0;
        for (;;) {
            const resume = this.seq === null ? null : { seq: this.seq, lastEventId: this.lastEventId };
            let ended = false;
            // Only the first connection of a round carries the replies after the one it resumes.
            const wholeRound = this.#isRound && resume === null;
            try {
                const response = await this.#transport.open(resume, resumes, this.#abort.signal);
                if (!response.ok) throw await ApiError.from(response);
                if (!response.body) throw new Error("the reply has no body");
                let replyEnded = false;
                for await (const raw of parseSse(response.body)) {
                    if (!EVENTS.has(raw.event)) continue;
                    const event = { id: Number(raw.id ?? this.lastEventId + 1), event: raw.event, data: JSON.parse(raw.data) } as ReplyEvent;
                    if (wholeRound && event.event === "reply.started" && event.data.assistant_message.seq !== this.seq && this.seq !== null) {
                        // The round's next reply: its events count from 1.
                        this.seq = event.data.assistant_message.seq;
                        this.lastEventId = 0;
                    }
                    if (event.id <= this.lastEventId) continue;
                    this.#observe(event);
                    yield event;
                    replyEnded = event.event === "reply.completed" || event.event === "reply.failed";
                    if (replyEnded && !wholeRound) {
                        ended = true;
                        return;
                    }
                }
                if (replyEnded) {
                    ended = true;
                    return;
                }
            } catch (error) {
                if (error instanceof ApiError || this.#abort.signal.aborted || resumes >= maxResumes) throw error;
            } finally {
                if (ended) this.#abort.abort();
            }
            if (resumes >= maxResumes) throw new Error("the reply's stream kept ending before the reply did");
            resumes += 1;
            await new Promise((resolve) => setTimeout(resolve, 250 * resumes));
        }
    }

    /** Stops the reply on the server (it ends `cancelled`, keeping its text so far); answers the message. */
    async cancel(): Promise<Message> {
        // In a round, the reply streaming now: cancelling it ends the round.
        return this.#transport.cancel(this.seq ?? (await this.#started));
    }

    /** Reads to the end; answers the reply's final message. */
    async done(): Promise<Message> {
        for await (const _ of this) {
            // each event updates `message` and `text`
        }
        if (!this.message) throw new Error("the reply ended without a message");
        return this.message;
    }

    /** Runs `onToolCall` and, when it gives an output, answers the call (not awaited: the stream goes on). */
    #answer(call: ToolCall): void {
        const hook = this.#options.onToolCall;
        if (!hook) return;
        void (async () => {
            const output = await hook(call);
            if (output === undefined) return;
            await this.#transport.answer(call.seq, call.id, output);
        })().catch((error: unknown) => this.#answerFailed(error));
    }

    #answerFailed(error: unknown): void {
        // The reply stays paused; its stream (or the pause's timeout) says what happened next.
        this.answerError = error;
    }

    /** Why answering a client tool call failed, if it did. */
    answerError: unknown = null;

    #observe(event: ReplyEvent): void {
        this.lastEventId = event.id;
        switch (event.event) {
            case "reply.started":
                this.message = event.data.assistant_message;
                this.text = event.data.assistant_message.content;
                break;
            case "reply.delta":
                this.text += event.data.text;
                break;
            case "reply.tool_call":
                this.tools.push(event.data);
                this.#answer(event.data);
                break;
            case "reply.tool_result":
                this.tools.push(event.data);
                break;
            default:
                this.message = event.data.assistant_message;
                this.text = event.data.assistant_message.content;
                this.round.push(event.data.assistant_message);
        }
        const seq = this.message?.seq ?? ("seq" in event.data && typeof event.data.seq === "number" ? event.data.seq : null);
        if (seq !== null && this.seq === null) {
            this.seq = seq;
            this.#markStarted(seq);
        }
    }
}
