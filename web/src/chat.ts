// One chat with a character, or a group chat with several: the log (kept exact by the socket's
// events), a reply streamed token by token over SSE with the typing line and Stop, Regenerate with
// the variants, edit and delete of the user's messages, new scene, reset and forget-recent.
// Another tab's changes arrive live. In a group each reply shows its character's name, and the
// composer says who answers: the group picks, everyone in turn, or one character asked.

import { ApiError, type ChatSocket, type Message, type ReplyPart, type ReplyStream, type ToolCall, type components, unwrap } from "@chat-backend/client";

import type { App } from "./app.js";
import { h, time } from "./dom.js";
import { describe } from "./errors.js";

type Session = components["schemas"]["Session"];

type Character = components["schemas"]["CharacterView"];

/** The tool this app answers itself: the device's local time, which a character may ask for. */
const LOCAL_TIME = {
    name: "local_time",
    description: "The user's local date, time and time zone, read from their device.",
    kind: "client" as const,
    parameters: { type: "object", properties: {}, additionalProperties: false },
};

/** Runs a client tool the model called; `undefined` for the tools it does not run (the server's). */
function runTool(call: ToolCall): unknown {
    if (call.name !== LOCAL_TIME.name) return undefined;
    const now = new Date();
    return { local_time: now.toLocaleString(), time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone, iso: now.toISOString() };
}

/** A character's own chat, or a group chat (a session with agents). */
export type ChatTarget = { character: string } | { session: string };

export async function openChat(app: App, view: HTMLElement, target: ChatTarget): Promise<() => void> {
    const { client } = app;
    view.replaceChildren(h("p", { class: "loading" }, "Opening the chat…"));
    let session: Session;
    let cast: Character[];
    try {
        if ("character" in target) {
            const id = target.character;
            cast = [unwrap(await client.api.GET("/v1/characters/{id}", { params: { path: { id } } }))];
            session = unwrap(await client.api.GET("/v1/characters/{id}/session", { params: { path: { id } } }));
        } else {
            session = unwrap(await client.api.GET("/v1/sessions/{id}", { params: { path: { id: target.session } } }));
            cast = await Promise.all(session.agents.map(async (id) => unwrap(await client.api.GET("/v1/characters/{id}", { params: { path: { id } } }))));
        }
    } catch (error) {
        app.notify(error);
        view.replaceChildren(h("p", { class: "empty" }, "This chat cannot be opened.", " ", h("a", { href: "#/" }, "Back to the characters")));
        return () => undefined;
    }
    // The assistant's own chats (no character) get the app's local-time tool: a character's chat
    // is left as its character made it, and a chat with tools of its own is left alone (a
    // session's tools are replaced as a whole and their secrets are write-only).
    if (session.tools.length === 0 && cast.length === 0) {
        try {
            session = unwrap(await client.api.PATCH("/v1/sessions/{id}", { params: { path: { id: session.id } }, body: { tools: [LOCAL_TIME] } }));
        } catch {
            // The chat works without it.
        }
    }
    const group = cast.length > 1;
    /** Who the chat is with: the character, or the group's names. */
    const character = { name: cast.map((entry) => entry.name).join(", ") || session.title || "Assistant" };
    app.setTitle(character.name, true);
    const sessionId = session.id;
    app.chatSession = sessionId;

    const messages = new Map<number, Message>();
    const elements = new Map<number, HTMLLIElement>();
    /** Replies this tab streams itself (their socket deltas are the same text again). */
    const streamingHere = new Set<number>();
    /** Shown variant per seq while browsing older generations. */
    const browsing = new Map<number, { index: number; variants: Message[] }>();
    let editing: number | null = null;
    let current: ReplyStream | null = null;
    let typingTimer: ReturnType<typeof setTimeout> | undefined;
    /** Aborted when the chat is left: stops following other devices' replies. */
    const leaving = new AbortController();

    const log = h("ol", { class: "log", "aria-label": `Messages with ${character.name}`, "aria-live": "polite" });
    const typing = h("p", { class: "typing", id: "typing", "aria-live": "polite" });
    // What was just remembered from this chat (a memory read from its turns, or added for it).
    const remembered = h("p", { class: "remembered", id: "remembered", role: "status", hidden: true });
    let rememberedTimer: ReturnType<typeof setTimeout> | undefined;
    const input = h("textarea", { name: "content", rows: 1, placeholder: `Message ${character.name}`, "aria-label": "Your message", maxlength: 32768 });
    const send = h("button", { type: "submit", class: "primary" }, "Send");
    const stop = h("button", { type: "button", id: "stop", hidden: true }, "Stop");
    // In a group: who answers — the group picks (orchestrated), everyone in turn, or one asked.
    const answering = h(
        "select",
        { name: "answering", "aria-label": "Who answers" },
        h("option", { value: "" }, "Anyone"),
        h("option", { value: "all" }, "Everyone"),
        ...cast.map((entry) => h("option", { value: `ask:${entry.id}` }, `Ask ${entry.name}`)),
    );
    const composer = h("form", { class: "composer" }, group && answering, input, stop, send);
    const tools = h(
        "div",
        { class: "tools", role: "toolbar", "aria-label": "Chat actions" },
        h("button", { type: "button", onclick: () => void act(() => client.api.POST("/v1/sessions/{id}/new-scene", { params: { path: { id: sessionId } }, body: { messages_to_keep: 0 } })) }, "New scene"),
        h("button", { type: "button", onclick: () => void act(() => client.api.POST("/v1/sessions/{id}/forget-recent", { params: { path: { id: sessionId } }, body: { count: 2 } })) }, "Forget last 2"),
        h("button", { type: "button", class: "danger", onclick: () => confirm("Reset this chat? Its messages and its own memories go.") && void act(() => client.api.POST("/v1/sessions/{id}/reset", { params: { path: { id: sessionId } }, body: {} })) }, "Reset"),
    );
    view.replaceChildren(h("section", { class: "chat", "aria-label": `Chat with ${character.name}` }, tools, log, remembered, typing, composer));

    // The log as the server has it: the newest messages and the revision they stand at.
    const full = await withMessages();
    for (const message of full.messages) upsert(message);
    const socket: ChatSocket = client.socket(sessionId, { afterRev: full.rev });
    // A user message spends a unit of the day's quota, whichever tab or device sent it: the
    // badge reads the quota again (once for a burst).
    let limitsTimer: ReturnType<typeof setTimeout> | undefined;
    const quotaChanged = () => {
        clearTimeout(limitsTimer);
        limitsTimer = setTimeout(() => void app.refreshLimits().catch(() => undefined), 250);
    };
    socket.on("message", ({ message }) => {
        const known = messages.has(message.seq);
        upsert(message);
        if (!known && message.role === "user") quotaChanged();
        if (message.status === "streaming" && message.role === "assistant") void follow(message.seq);
    });
    socket.on("deleted", (event) => {
        for (const seq of [...messages.keys()]) if ("seqs" in event ? event.seqs.includes(seq) : seq <= event.through_seq) remove(seq);
    });
    socket.on("delta", ({ seq, text }) => {
        const message = messages.get(seq);
        if (!message || streamingHere.has(seq) || message.status !== "streaming") return;
        upsert({ ...message, content: message.content + text });
    });
    socket.on("typing", ({ is_typing }) => showTyping(is_typing, streamingHere.size > 0 ? null : "Someone is typing on another device…"));
    socket.on("memory", (event) => {
        // The memories panel, if open, shows the change; a new memory gets a short note here.
        document.dispatchEvent(new CustomEvent("memories-changed"));
        if (event.kind !== "new" || event.memory.superseded_by) return;
        const text = event.memory.content.length > 80 ? `${event.memory.content.slice(0, 79)}…` : event.memory.content;
        remembered.textContent = `${group ? "Remembered" : `${character.name} remembered`}: “${text}”`;
        remembered.hidden = false;
        clearTimeout(rememberedTimer);
        rememberedTimer = setTimeout(() => (remembered.hidden = true), 10_000);
    });
    socket.on("error", (error) => app.notify(error.message));
    socket.on("state", ({ state }) => view.querySelector(".chat")?.setAttribute("data-socket", state));

    composer.addEventListener("submit", (event) => {
        event.preventDefault();
        const content = input.value.trim();
        if (!content || current) return;
        input.value = "";
        socket.typing(false);
        const choice = group ? answering.value : "";
        const body = choice === "all" ? { content, mode: "all" as const } : choice.startsWith("ask:") ? { content, mode: "direct" as const, agent: choice.slice(4) } : { content };
        void stream(client.reply(sessionId, body, { onToolCall: runTool }), content);
    });
    input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) {
            event.preventDefault();
            composer.requestSubmit();
        }
    });
    let typingSent = 0;
    input.addEventListener("input", () => {
        if (Date.now() - typingSent > 3000) {
            typingSent = Date.now();
            socket.typing(true);
        }
    });
    stop.addEventListener("click", () => {
        stop.disabled = true;
        current?.cancel().catch((error) => app.notify(error));
    });

    async function stream(reply: ReplyStream, sent: string | null): Promise<void> {
        current = reply;
        app.clearNotice();
        send.disabled = true;
        stop.hidden = false;
        stop.disabled = true;
        showTyping(true, group ? "…" : `${character.name} is typing…`);
        // A round brings several replies on this one stream.
        const mine: number[] = [];
        try {
            for await (const event of reply) {
                switch (event.event) {
                    case "reply.started":
                        if (event.data.user_message) upsert(event.data.user_message);
                        mine.push(event.data.assistant_message.seq);
                        streamingHere.add(event.data.assistant_message.seq);
                        showTyping(true, `${speaker(event.data.assistant_message)} is typing…`);
                        upsert(event.data.assistant_message);
                        stop.disabled = false;
                        break;
                    case "reply.delta": {
                        const message = messages.get(event.data.seq);
                        if (message) upsert({ ...message, content: reply.text });
                        break;
                    }
                    case "reply.tool_call":
                    case "reply.tool_result": {
                        const message = messages.get(event.data.seq);
                        const part = event.event === "reply.tool_call" ? { type: "tool_call" as const, ...event.data } : { type: "tool_result" as const, ...event.data };
                        if (message) upsert({ ...message, parts: [...(message.parts ?? []), part as ReplyPart] });
                        break;
                    }
                    case "reply.completed":
                        upsert(event.data.assistant_message);
                        if (event.data.limits) app.showLimits(event.data.limits);
                        break;
                    case "reply.failed":
                        upsert(event.data.assistant_message);
                        app.notify(describe(new ApiError(502, { error: event.data.error.code, message: event.data.error.message, request_id: null } as never)));
                        break;
                }
            }
        } catch (error) {
            app.notify(error);
            if (error instanceof ApiError && error.body.limits) app.showLimits(error.body.limits);
            if (sent && !input.value) input.value = sent;
        } finally {
            for (const seq of mine) streamingHere.delete(seq);
            if (reply.seq !== null) streamingHere.delete(reply.seq);
            current = null;
            send.disabled = false;
            stop.hidden = true;
            showTyping(false, null);
            renderAll();
        }
    }

    /**
     * Another tab or device started this reply: read it token by token as well (`GET …/stream`
     * replays it from the start, then follows it), instead of waiting for its checkpoints.
     */
    async function follow(seq: number): Promise<void> {
        if (streamingHere.has(seq)) return;
        streamingHere.add(seq);
        const known = messages.get(seq);
        showTyping(true, `${known ? speaker(known) : character.name} is typing…`);
        // A paused reply's client tool is answered by whichever tab follows it first.
        const reply = client.stream(sessionId, seq, { signal: leaving.signal, onToolCall: runTool });
        try {
            for await (const event of reply) {
                if (event.event === "reply.tool_call" || event.event === "reply.tool_result") continue;
                const message = event.event === "reply.delta" ? messages.get(seq) : event.data.assistant_message;
                if (message) upsert(event.event === "reply.delta" ? { ...message, content: reply.text } : message);
            }
        } catch {
            // The socket's events still bring the reply's checkpoints and its end.
        } finally {
            streamingHere.delete(seq);
            if (streamingHere.size === 0) showTyping(false, null);
        }
    }

    async function act(call: () => Promise<{ response: Response; error?: unknown; data?: unknown }>): Promise<void> {
        try {
            unwrap(await call());
            await reload();
        } catch (error) {
            app.notify(error);
        }
    }

    /** The session with its newest 100 live messages, and the revision they stand at. */
    async function withMessages(): Promise<{ rev: number; messages: Message[] }> {
        const read = unwrap(await client.api.GET("/v1/sessions/{id}", { params: { path: { id: sessionId }, query: { include: "messages", messages_limit: 100 } } }));
        return { rev: read.rev, messages: "messages" in read ? read.messages : [] };
    }

    async function reload(): Promise<void> {
        const fresh = await withMessages();
        const live = new Set(fresh.messages.map((message) => message.seq));
        for (const seq of [...messages.keys()]) if (!live.has(seq)) remove(seq);
        for (const message of fresh.messages) upsert(message);
    }

    /** Who wrote a reply: its agent, else the chat's character. */
    function speaker(message: Message): string {
        return message.agent?.name ?? character.name;
    }

    function showTyping(on: boolean, text: string | null): void {
        clearTimeout(typingTimer);
        typing.textContent = on ? (text ?? `${character.name} is typing…`) : "";
        if (on && text) typingTimer = setTimeout(() => (typing.textContent = ""), 30_000);
    }

    function upsert(message: Message): void {
        const held = messages.get(message.seq);
        // A checkpoint can trail the text streamed here: keep the longer text while it streams.
        if (held && message.status === "streaming" && held.status === "streaming" && held.content.startsWith(message.content)) {
            message = { ...message, content: held.content };
        }
        if (held && held.rev > message.rev) return;
        messages.set(message.seq, message);
        if (editing === message.seq) return;
        browsing.delete(message.seq);
        render(message);
    }

    function remove(seq: number): void {
        messages.delete(seq);
        elements.get(seq)?.remove();
        elements.delete(seq);
        renderAll();
    }

    function renderAll(): void {
        for (const message of messages.values()) if (editing !== message.seq) render(message);
    }

    function latestSeq(): number {
        return Math.max(0, ...messages.keys());
    }

    function render(message: Message): void {
        const shown = browsing.get(message.seq);
        const text = shown ? shown.variants[shown.index]!.content : message.content;
        const item = h(
            "li",
            { class: `msg ${message.role} ${message.status}`, "data-seq": message.seq, "data-status": message.status, "data-role": message.role, "data-agent": message.agent?.id },
            group && message.role === "assistant" && h("p", { class: "speaker" }, speaker(message)),
            ...toolParts(message),
            h("p", { class: "bubble" }, text || (message.status === "streaming" ? "…" : "")),
            h("div", { class: "meta" }, ...meta(message)),
        );
        const old = elements.get(message.seq);
        elements.set(message.seq, item);
        if (old) {
            old.replaceWith(item);
            return;
        }
        const after = [...elements.keys()].filter((seq) => seq > message.seq && elements.get(seq)?.isConnected).sort((a, b) => a - b)[0];
        if (after === undefined) log.append(item);
        else log.insertBefore(item, elements.get(after)!);
        item.scrollIntoView({ block: "end" });
    }

    /** A reply's tool calls, each with its result, collapsed: "Used local_time" opens to the data. */
    function toolParts(message: Message): Node[] {
        const parts = message.parts ?? [];
        const results = new Map(parts.flatMap((part) => (part.type === "tool_result" ? [[part.tool_call_id, part] as const] : [])));
        return parts.flatMap((part) => {
            if (part.type !== "tool_call") return [];
            const result = results.get(part.id);
            const state = !result ? "waiting" : result.error ? "failed" : "done";
            const label = state === "waiting" ? `Using ${part.name}…` : state === "failed" ? `${part.name} failed` : `Used ${part.name}`;
            const shown = result ? (result.error ? `${result.error.code}: ${result.error.message}` : JSON.stringify(result.output, null, 2)) : "";
            return [
                h(
                    "details",
                    { class: `tool ${state}`, "data-tool": part.name, "data-call": part.id },
                    h("summary", {}, label),
                    h("pre", {}, `${JSON.stringify(part.arguments)}\n→ ${shown}`),
                ),
            ];
        });
    }

    function meta(message: Message): (Node | string)[] {
        const parts: (Node | string)[] = [h("time", { datetime: message.created_at }, time(message.created_at))];
        const label = { streaming: "typing…", cancelled: "stopped", failed: "failed", incomplete: "cut short", complete: "", requires_action: "waiting for the app" }[message.status];
        if (label) parts.push(h("span", { class: "status" }, label));
        if (message.edited_at) parts.push(h("span", {}, "edited"));
        const idle = current === null && message.status !== "streaming";
        if (message.role === "user" && idle) {
            parts.push(h("button", { type: "button", "aria-label": `Edit message ${message.seq}`, onclick: () => edit(message) }, "Edit"));
            parts.push(h("button", { type: "button", class: "danger", "aria-label": `Delete message ${message.seq}`, onclick: () => void remove_(message.seq) }, "Delete"));
        }
        if (message.role === "assistant" && message.variant_count > 1) {
            const shown = browsing.get(message.seq);
            const index = shown ? shown.index : message.variant_count - 1;
            parts.push(h("button", { type: "button", "aria-label": "Previous variant", disabled: index === 0, onclick: () => void flip(message, -1) }, "‹"));
            parts.push(h("span", { class: "variant" }, `${index + 1}/${message.variant_count}`));
            parts.push(h("button", { type: "button", "aria-label": "Next variant", disabled: index === message.variant_count - 1, onclick: () => void flip(message, 1) }, "›"));
        }
        if (message.role === "assistant" && idle && message.seq === latestSeq() && message.seq > 1) {
            parts.push(h("button", { type: "button", onclick: () => void stream(client.regenerate(sessionId, message.seq, {}, { onToolCall: runTool }), null) }, "Regenerate"));
        }
        return parts;
    }

    async function flip(message: Message, step: number): Promise<void> {
        try {
            const held = browsing.get(message.seq) ?? {
                index: message.variant_count - 1,
                variants: unwrap(await client.api.GET("/v1/sessions/{id}/messages/{seq}/variants", { params: { path: { id: sessionId, seq: message.seq } } })).data,
            };
            held.index = Math.max(0, Math.min(held.variants.length - 1, held.index + step));
            browsing.set(message.seq, held);
            render(message);
        } catch (error) {
            app.notify(error);
        }
    }

    function edit(message: Message): void {
        editing = message.seq;
        const field = h("textarea", { "aria-label": `New text of message ${message.seq}`, rows: 3 });
        field.value = message.content;
        const done = () => {
            editing = null;
            const latest = messages.get(message.seq);
            if (latest) render(latest);
        };
        const form = h("form", { class: "edit" }, field, h("div", { class: "meta" }, h("button", { type: "submit", class: "primary" }, "Save"), h("button", { type: "button", onclick: done }, "Cancel")));
        form.addEventListener("submit", async (event) => {
            event.preventDefault();
            try {
                const saved = unwrap(await client.api.PATCH("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: sessionId, seq: message.seq } }, body: { content: field.value } }));
                editing = null;
                upsert(saved);
            } catch (error) {
                app.notify(error);
            }
        });
        elements.get(message.seq)?.replaceChildren(form);
        field.focus();
    }

    async function remove_(seq: number): Promise<void> {
        if (!confirm("Delete this message?")) return;
        try {
            unwrap(await client.api.DELETE("/v1/sessions/{id}/messages/{seq}", { params: { path: { id: sessionId, seq } } }));
            remove(seq);
        } catch (error) {
            app.notify(error);
        }
    }

    input.focus();
    return () => {
        if (app.chatSession === sessionId) app.chatSession = null;
        leaving.abort();
        socket.close();
        clearTimeout(rememberedTimer);
        clearTimeout(limitsTimer);
        clearTimeout(typingTimer);
    };
}
