// Every route is typed from openapi.json: calls, results and refusals as a frontend meets them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, bearer, createChatClient, unwrap } from "../src/index.js";
import { baseUrl, devToken, signIn } from "./server.js";

test("typed calls: a session, an idempotent append, the listing", async () => {
    const chat = await signIn("api");
    const session = unwrap(await chat.api.POST("/v1/sessions", { body: { title: "Trip to Lisbon" } }));
    assert.equal(session.title, "Trip to Lisbon");
    assert.equal(session.rev, 0);

    const append = () =>
        chat.api.POST("/v1/sessions/{id}/messages", {
            params: { path: { id: session.id }, header: { "Idempotency-Key": "turn-1" } },
            body: { role: "user", content: "Where should we start?" },
        });
    const first = await append();
    const retry = await append();
    assert.equal(first.response.status, 201);
    assert.equal(retry.response.status, 200);
    assert.equal(retry.response.headers.get("idempotent-replayed"), "true");
    assert.equal(unwrap(retry).id, unwrap(first).id);

    const list = unwrap(await chat.api.GET("/v1/sessions/{id}/messages", { params: { path: { id: session.id } } }));
    assert.deepEqual(list.data.map((message) => [message.seq, message.content]), [[1, "Where should we start?"]]);
    assert.equal(list.last_seq, 1);
});

test("another user's session is 404, exactly like a missing one", async () => {
    const alice = await signIn("alice");
    const bob = await signIn("bob");
    const session = unwrap(await alice.api.POST("/v1/sessions", { body: {} }));
    const result = await bob.api.GET("/v1/sessions/{id}", { params: { path: { id: session.id } } });
    assert.equal(result.response.status, 404);
    assert.throws(() => unwrap(result), (error: unknown) => error instanceof ApiError && error.status === 404 && error.code === "not_found");
});

test("bad input and bad credentials come back as typed errors", async () => {
    const chat = await signIn("errors");
    const bad = await chat.api.POST("/v1/sessions", { body: { title: "" } });
    assert.equal(bad.response.status, 400);
    assert.equal(bad.error?.error, "invalid_input");
    assert.equal(bad.error?.field, "title");

    const stranger = createChatClient({ baseUrl, auth: bearer("not-a-jwt") });
    const refused = await stranger.api.GET("/v1/me");
    assert.equal(refused.response.status, 401);
    assert.equal(refused.error?.error, "unauthorized");
});

test("a token function is asked for the current token on every request", async () => {
    const token = devToken("rotating");
    let asked = 0;
    const chat = createChatClient({
        baseUrl,
        auth: bearer(async () => {
            asked += 1;
            return token;
        }),
    });
    unwrap(await chat.api.GET("/v1/me"));
    unwrap(await chat.api.GET("/v1/limits"));
    assert.equal(asked, 2);
});
