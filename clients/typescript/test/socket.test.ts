// The realtime socket against the dev server: two devices see each other's changes in rev order,
// a device that was away catches up exactly, send_message streams to both, typing is relayed,
// quota refusals arrive as error events, Telegram init data signs the socket in.
import assert from "node:assert/strict";
import { test } from "node:test";

import { type ChatClient, type ChatSocket, type SocketEvents, unwrap } from "../src/index.js";
import { dailyQuota, eventually, initData, signIn, telegramClient } from "./server.js";

interface Recorder {
    socket: ChatSocket;
    events: { [K in keyof SocketEvents]?: SocketEvents[K][] };
}

function record(chat: ChatClient, sessionId: string, afterRev: number): Recorder {
    const socket = chat.socket(sessionId, { afterRev });
    const recorder: Recorder = { socket, events: {} };
    for (const name of ["message", "deleted", "session", "typing", "delta", "complete", "memory", "error", "synced", "state"] as const) {
        socket.on(name, (data) => ((recorder.events[name] ??= []) as unknown[]).push(data));
    }
    return recorder;
}

const opened = (recorder: Recorder) => eventually(() => (recorder.events.synced?.length ? true : undefined), "the socket's first sync");

async function append(chat: ChatClient, id: string, content: string) {
    return unwrap(await chat.api.POST("/v1/sessions/{id}/messages", { params: { path: { id } }, body: { role: "user", content } }));
}

test("two devices see appends, an edit and a delete, in rev order", async () => {
    const chat = await signIn("devices");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const [a, b] = [record(chat, session.id, session.rev), record(chat, session.id, session.rev)];
    await Promise.all([opened(a), opened(b)]);

    await append(chat, session.id, "one");
    await append(chat, session.id, "two");
    unwrap(await chat.api.PATCH("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: session.id, seq: 1 } }, body: { content: "one, edited" } }));
    unwrap(await chat.api.DELETE("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: session.id, seq: 2 } } }));

    for (const device of [a, b]) {
        await eventually(() => (device.events.deleted?.length ? true : undefined), "the delete");
        await eventually(() => (device.socket.rev === 4 ? true : undefined), "rev 4");
        const messages = device.events.message!.map(({ rev, message }) => [rev, message.seq, message.content]);
        assert.deepEqual(messages, [[1, 1, "one"], [2, 2, "two"], [3, 1, "one, edited"]]);
        assert.deepEqual(device.events.deleted, [{ rev: 4, seqs: [2] }]);
    }
    a.socket.close();
    b.socket.close();
});

test("a device that was away gets exactly the changes it missed, each once", async () => {
    const chat = await signIn("away");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const first = record(chat, session.id, session.rev);
    await opened(first);
    await append(chat, session.id, "before");
    await eventually(() => (first.socket.rev === 1 ? true : undefined), "the first append");
    first.socket.close();

    // Away: two appends, an edit of the first message, a forget-recent of the newest.
    await append(chat, session.id, "missed one");
    await append(chat, session.id, "missed two");
    unwrap(await chat.api.PATCH("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: session.id, seq: 1 } }, body: { content: "before, edited" } }));
    unwrap(await chat.api.POST("/v1/sessions/{id}/forget-recent", { params: { path: { id: session.id } }, body: { count: 1 } }));

    const back = record(chat, session.id, first.socket.rev);
    await opened(back);
    const feed = unwrap(await chat.api.GET("/v1/sessions/{id}/changes", { params: { path: { id: session.id }, query: { after_rev: 1 } } }));
    assert.deepEqual(
        back.events.message!.map(({ rev, message }) => [rev, message.seq, message.content]),
        feed.data.flatMap((change) => (change.type === "message" ? [[change.rev, change.message.seq, change.message.content]] : [])),
    );
    assert.deepEqual(back.events.message!.map(({ message }) => message.content), ["missed one", "before, edited"]);
    assert.deepEqual(back.events.deleted, [{ rev: 5, seqs: [3] }]);
    assert.equal(back.socket.rev, 5);
    back.socket.close();
});

test("send_message streams the reply to both devices; typing is relayed to the other", async () => {
    const chat = await signIn("send");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const [a, b] = [record(chat, session.id, session.rev), record(chat, session.id, session.rev)];
    await Promise.all([opened(a), opened(b)]);

    a.socket.typing(true);
    await eventually(() => (b.events.typing?.some((event) => event.is_typing) ? true : undefined), "the relayed typing");
    assert.equal(a.events.typing, undefined, "typing is not echoed to its sender");

    a.socket.sendMessage("Say hi in three words.");
    for (const device of [a, b]) {
        const complete = await eventually(() => device.events.complete?.[0], "message.complete");
        assert.equal(complete.seq, 2);
        const final = await eventually(
            () => device.events.message?.find(({ message }) => message.seq === 2 && message.status !== "streaming")?.message,
            "the stored reply",
        );
        const deltas = device.events.delta!.filter((delta) => delta.seq === 2).map((delta) => delta.text).join("");
        assert.equal(deltas, final.content);
        assert.ok(device.events.typing!.some((event) => !event.is_typing));
    }
    a.socket.close();
    b.socket.close();
});

test("a used-up quota arrives as an error event and stores nothing", async () => {
    const chat = await signIn("quota");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const messages = Array.from({ length: dailyQuota }, (_, index) => ({ role: "user" as const, content: `message ${index + 1}` }));
    unwrap(await chat.api.POST("/v1/sessions/{id}/messages/batch", { params: { path: { id: session.id } }, body: { messages } }));
    const before = unwrap(await chat.api.GET("/v1/sessions/{id}", { params: { path: { id: session.id } } }));
    assert.equal(before.rev, 1, "a batch is one revision");
    const device = record(chat, session.id, before.rev);
    await opened(device);
    device.socket.sendMessage("one more");
    const error = await eventually(() => device.events.error?.[0], "the error event");
    assert.equal(error.code, "daily_limit_exceeded");
    const after = unwrap(await chat.api.GET("/v1/sessions/{id}", { params: { path: { id: session.id } } }));
    assert.equal(after.last_seq, dailyQuota);
    device.socket.close();
});

test("Telegram init data signs in over HTTP and the socket", async () => {
    const id = 100_000 + Math.floor(Math.random() * 1_000_000);
    const chat = telegramClient(initData({ id, first_name: "Ada", username: "ada", language_code: "pt-br" }));
    const me = unwrap(await chat.api.GET("/v1/me"));
    assert.equal(me.id, `tg:${id}`);
    assert.equal(me.telegram?.first_name, "Ada");
    assert.equal(me.language, "pt-BR");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const device = record(chat, session.id, 0);
    await opened(device);
    await append(chat, session.id, "from Telegram");
    const event = await eventually(() => device.events.message?.[0], "the append");
    assert.equal(event.message.content, "from Telegram");
    device.socket.close();
});

/** A WebSocket whose instances the test can reach, to cut a connection or drop frames (the faults). */
function faultySockets(dropPongs = false) {
    const opened: WebSocket[] = [];
    class Faulty extends WebSocket {
        constructor(url: string | URL, protocols?: string | string[]) {
            super(url, protocols);
            opened.push(this);
            // Registered before the client's `onmessage`, so stopping a pong here hides it from the client.
            if (dropPongs) {
                this.addEventListener("message", (event) => {
                    if (typeof event.data === "string" && event.data.includes('"pong"')) event.stopImmediatePropagation();
                });
            }
        }
    }
    return { opened, WebSocket: Faulty as unknown as typeof WebSocket };
}

test("a dropped connection reconnects with backoff and catches up what it missed, once", async () => {
    const chat = await signIn("reconnect");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const faults = faultySockets();
    const socket = chat.socket(session.id, { afterRev: session.rev, WebSocket: faults.WebSocket, baseDelayMs: 400 });
    const states: string[] = [];
    const seen: number[] = [];
    socket.on("state", ({ state }) => states.push(state));
    socket.on("message", ({ message }) => seen.push(message.seq));
    let synced = 0;
    socket.on("synced", () => (synced += 1));
    await eventually(() => (synced === 1 ? true : undefined), "the first sync");

    faults.opened[0]!.close();
    await eventually(() => (states.at(-1) === "closed" ? true : undefined), "the drop");
    // Written while the device is away (the backoff is at least 200 ms).
    await append(chat, session.id, "while away");
    await append(chat, session.id, "still away");
    await eventually(() => (synced === 2 ? true : undefined), "the sync after reconnecting");
    await eventually(() => (socket.rev === 2 ? true : undefined), "rev 2");
    assert.equal(faults.opened.length, 2);
    assert.deepEqual(states, ["open", "closed", "connecting", "open"]);
    assert.deepEqual([...seen].sort(), [1, 2]);
    socket.close();
});

test("a ping that gets no answer closes the connection and opens a new one", async () => {
    const chat = await signIn("ping");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const faults = faultySockets(true);
    const socket = chat.socket(session.id, { WebSocket: faults.WebSocket, pingIntervalMs: 100, pongTimeoutMs: 300, baseDelayMs: 50 });
    await eventually(() => (faults.opened.length >= 2 ? true : undefined), "a second connection");
    assert.equal(faults.opened[0]!.readyState, WebSocket.CLOSED);
    socket.close();
});

test("a memory of the session arrives as memory events: new, then deleted", async () => {
    const chat = await signIn("memories");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: {} }));
    const device = record(chat, session.id, session.rev);
    await opened(device);
    const memory = unwrap(await chat.api.POST("/v1/memories", { body: { content: "Chapter two begins", memory_type: "fact", session_id: session.id } }));
    assert.equal(memory.origin, "user");
    await eventually(() => (device.events.memory?.length ? true : undefined), "memory.new");
    unwrap(await chat.api.DELETE("/v1/memories/{id}", { params: { path: { id: memory.id } } }));
    await eventually(() => (device.events.memory?.length === 2 ? true : undefined), "memory.deleted");
    const [added, deleted] = device.events.memory!;
    assert.ok(added && added.kind === "new" && added.memory.id === memory.id && added.memory.content === "Chapter two begins");
    assert.deepEqual(deleted, { kind: "deleted", memory_id: memory.id });
    device.socket.close();
});
