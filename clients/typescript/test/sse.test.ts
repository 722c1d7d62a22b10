// The SSE parser on its own: line endings, comments, multi-line data, ids, and chunks that split
// anywhere (a CRLF, a multi-byte character).
import assert from "node:assert/strict";
import { test } from "node:test";

import { parseSse, type SseEvent } from "../src/index.js";

function body(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
    const encoder = new TextEncoder();
    return new ReadableStream({
        start(controller) {
            for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
            controller.close();
        },
    });
}

async function parse(chunks: (string | Uint8Array)[]): Promise<SseEvent[]> {
    const events: SseEvent[] = [];
    for await (const event of parseSse(body(chunks))) events.push(event);
    return events;
}

test("events, ids, comments and line endings", async () => {
    const text = ": keep-alive\r\nid: 1\r\nevent: reply.started\r\ndata: {\"a\":1}\r\n\r\nid: 2\nevent: reply.delta\ndata: line one\ndata:line two\n\n: comment\n\nid: 3\revent: reply.completed\rdata: {}\r\r";
    assert.deepEqual(await parse([text]), [
        { id: "1", event: "reply.started", data: '{"a":1}' },
        { id: "2", event: "reply.delta", data: "line one\nline two" },
        { id: "3", event: "reply.completed", data: "{}" },
    ]);
});

test("chunks split inside a CRLF and inside a character", async () => {
    const bytes = new TextEncoder().encode("id: 7\r\nevent: reply.delta\r\ndata: café ☕\r\n\r\n");
    const chunks: Uint8Array[] = [];
    for (let index = 0; index < bytes.length; index += 3) chunks.push(bytes.slice(index, index + 3));
    assert.deepEqual(await parse(chunks), [{ id: "7", event: "reply.delta", data: "café ☕" }]);
});

test("an event without a type is a message; one cut off by the end is not delivered", async () => {
    assert.deepEqual(await parse(["data: x\n\ndata: unfinished"]), [{ id: null, event: "message", data: "x" }]);
});
