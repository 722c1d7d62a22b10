// Replies over SSE from the local model: typed events, resume with Last-Event-ID (asked for, and
// after a connection cut mid-stream), cancel, regenerate, refusals.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { ApiError, type ReplyEvent, bearer, createChatClient, unwrap } from "../src/index.js";
import { baseUrl, devToken, signIn, stallNextReply } from "./server.js";

async function newSession(name: string) {
    const chat = await signIn(name);
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    return { chat, session };
}

async function collect(stream: AsyncIterable<ReplyEvent>): Promise<ReplyEvent[]> {
    const events: ReplyEvent[] = [];
    for await (const event of stream) events.push(event);
    return events;
}

test("a reply streams: started, deltas that join to the stored text, completed", async () => {
    const { chat, session } = await newSession("reply");
    const stream = chat.reply(session.id, { content: "Say hello to me.", max_tokens: 24 });
    const events = await collect(stream);
    assert.equal(events[0]?.event, "reply.started");
    assert.equal(events.at(-1)?.event, "reply.completed");
    assert.deepEqual(events.map((event) => event.id), events.map((_, index) => index + 1));
    const deltas = events.filter((event) => event.event === "reply.delta");
    assert.ok(deltas.length >= 2, `expected the text in pieces, got ${deltas.length}`);
    const stored = unwrap(await chat.api.GET("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: session.id, seq: 2 } } }));
    assert.equal(deltas.map((event) => (event.event === "reply.delta" ? event.data.text : "")).join(""), stored.content);
    assert.equal(stream.text, stored.content);
    assert.equal(stream.seq, 2);
    assert.ok(["complete", "incomplete"].includes(stored.status));
});

test("resume: the events after a Last-Event-ID, exactly the tail of the whole stream", async () => {
    const { chat, session } = await newSession("resume");
    const whole = await collect(chat.reply(session.id, { content: "Name three colours.", max_tokens: 24 }));
    const tail = await collect(chat.stream(session.id, 2, { lastEventId: 2 }));
    // Read back from the store, the end carries no quota (the turn's is the live stream's only).
    const last = tail.at(-1);
    assert.ok(last?.event === "reply.completed" && last.data.limits === null);
    const wholeLast = whole.at(-1);
    assert.ok(wholeLast?.event === "reply.completed" && wholeLast.data.limits?.remaining === 11);
    const withoutLimits = (events: ReplyEvent[]) =>
        events.map((event) => (event.event === "reply.completed" ? { ...event, data: { ...event.data, limits: null } } : event));
    assert.deepEqual(withoutLimits(tail), withoutLimits(whole.slice(2)));
});

test("a connection cut mid-reply resumes by itself: each event once, in order", async () => {
    const token = await devToken("cut");
    let cuts = 0;
    const requests: string[] = [];
    // The fault: the first response's body breaks off after its second event, as a dropped connection would.
    const cutting: typeof fetch = async (input, init) => {
        const response = await fetch(input, init);
        const headers = new Headers(init?.headers);
        requests.push(`${init?.method ?? "GET"} ${String(input).replace(baseUrl, "")} ${headers.get("last-event-id") ?? "-"}`);
        if (cuts > 0 || !response.body || !String(input).endsWith("/replies")) return response;
        cuts += 1;
        // Exactly two events get through (reply.started and the first delta), then the body fails.
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let text = "";
        const body = new ReadableStream<Uint8Array>({
            async pull(controller) {
                const { value, done } = await reader.read();
                if (done) return controller.close();
                text += decoder.decode(value, { stream: true });
                const ends = [...text.matchAll(/\n\n/g)];
                if (ends.length < 2) return;
                controller.enqueue(new TextEncoder().encode(text.slice(0, ends[1]!.index + 2)));
                await reader.cancel();
                controller.error(new TypeError("terminated"));
            },
        });
        return new Response(body, { status: response.status, headers: response.headers });
    };
    const chat = createChatClient({ baseUrl, auth: bearer(token), fetch: cutting });
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const stream = chat.reply(session.id, { content: "Count from one to ten.", max_tokens: 40 });
    const events = await collect(stream);
    assert.equal(cuts, 1);
    assert.match(requests.find((line) => line.includes("/stream")) ?? "", /^GET \/v1\/sessions\/.+\/messages\/2\/stream [1-9]\d*$/);
    assert.deepEqual(events.map((event) => event.id), events.map((_, index) => index + 1));
    assert.equal(events.at(-1)?.event, "reply.completed");
    const stored = unwrap(await chat.api.GET("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: session.id, seq: 2 } } }));
    assert.equal(stream.text, stored.content);
});

test("cancel stops the reply: it ends cancelled with the text it had", async () => {
    const { chat, session } = await newSession("cancel");
    // The model is fast enough to finish before a cancel lands: its reply stops arriving after 24
    // characters and stays open, as a stuck provider's does, until the cancel ends it.
    const word = `stall-${randomUUID().slice(0, 8)}`;
    await stallNextReply(word);
    const stream = chat.reply(session.id, { content: `Count from 1 to 300, one number per line. (${word})`, max_tokens: 160 });
    const events: ReplyEvent[] = [];
    let cancelled = null;
    for await (const event of stream) {
        events.push(event);
        if (event.event === "reply.delta" && cancelled === null) cancelled = await stream.cancel();
    }
    assert.ok(cancelled);
    const last = events.at(-1);
    assert.equal(last?.event, "reply.completed");
    assert.equal(last?.event === "reply.completed" && last.data.assistant_message.status, "cancelled");
    const stored = unwrap(await chat.api.GET("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: session.id, seq: 2 } } }));
    assert.equal(stored.status, "cancelled");
    assert.ok(stream.text.length > 0, "the text streamed before the cancel is kept");
    assert.equal(stream.text, stored.content);
});

test("a group round streams each agent's reply in turn, named, for one quota unit", async () => {
    const chat = await signIn("round");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: { agents: ["luna", "chef-marco"] } }));
    const before = unwrap(await chat.api.GET("/v1/limits", {})).messages_limit.used;
    const stream = chat.reply(session.id, { content: "Hello, both of you!", mode: "all", max_tokens: 12 });
    const events = await collect(stream);
    const started = events.filter((event) => event.event === "reply.started");
    assert.deepEqual(
        started.map((event) => (event.event === "reply.started" ? [event.id, event.data.assistant_message.agent?.id] : null)),
        [[1, "luna"], [1, "chef-marco"]],
    );
    assert.deepEqual(stream.round.map((message) => [message.seq, message.agent?.name, message.routing?.mode]), [
        [2, "Luna", "all"],
        [3, "Chef Marco", "all"],
    ]);
    const log = unwrap(await chat.api.GET("/v1/sessions/{id}/messages", { params: { path: { id: session.id } } }));
    assert.deepEqual(log.data.map((message) => message.seq), [1, 2, 3]);
    assert.equal(unwrap(await chat.api.GET("/v1/limits", {})).messages_limit.used, before + 1);
});

test("regenerate streams a new variant at the same seq", async () => {
    const { chat, session } = await newSession("regenerate");
    const first = await chat.reply(session.id, { content: "Pick a fruit.", max_tokens: 16 }).done();
    const again = await chat.regenerate(session.id, first.seq, { max_tokens: 16 }).done();
    assert.equal(again.seq, first.seq);
    assert.equal(again.variant_count, 2);
    const variants = unwrap(await chat.api.GET("/v1/sessions/{id}/messages/{seq}/variants", { params: { path: { id: session.id, seq: first.seq } } }));
    assert.equal(variants.data.length, 2);
    assert.equal(variants.data[0]?.content, first.content);
});

test("a refused reply throws an ApiError before any event", async () => {
    const { chat, session } = await newSession("refused");
    const tooMany = chat.reply(session.id, { content: "hi", max_tokens: 1_000_000 });
    await assert.rejects(collect(tooMany), (error: unknown) => error instanceof ApiError && error.status === 400 && error.code === "invalid_input");
    const stranger = createChatClient({ baseUrl, auth: bearer("x.y.z") });
    await assert.rejects(collect(stranger.reply(session.id, { content: "hi" })), (error: unknown) => error instanceof ApiError && error.status === 401);
});

test("a client tool: the stream's onToolCall answers the call, the paused reply resumes on the same stream", async () => {
    const chat = await signIn("client-tool");
    const tool = {
        name: "local_time",
        description: "The user's local time, from their device.",
        kind: "client" as const,
        parameters: { type: "object", properties: {}, additionalProperties: false },
    };
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: { tools: [tool] } }));
    assert.equal(session.tools[0]?.kind, "client");
    const asked: string[] = [];
    const stream = chat.reply(
        session.id,
        { content: "What time is it for me?", tool_choice: { name: "local_time" }, max_tokens: 24 },
        { onToolCall: (call) => (asked.push(call.name), { time: "21:15", timezone: "Europe/Paris" }) },
    );
    const events = await collect(stream);
    assert.deepEqual(asked, ["local_time"]);
    assert.deepEqual(events.slice(0, 3).map((event) => event.event), ["reply.started", "reply.tool_call", "reply.tool_result"]);
    assert.equal(events.at(-1)?.event, "reply.completed");
    assert.deepEqual(events.map((event) => event.id), events.map((_, index) => index + 1));
    const result = events[2];
    assert.ok(result?.event === "reply.tool_result" && (result.data.output as { time: string }).time === "21:15");
    assert.equal(stream.tools.length, 2);
    const stored = unwrap(await chat.api.GET("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: session.id, seq: 2 } } }));
    assert.deepEqual(stored.parts?.slice(0, 2).map((part) => part.type), ["tool_call", "tool_result"]);
    assert.equal(stored.variant, 1);
});
