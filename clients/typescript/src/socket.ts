// The realtime socket of one chat: typed events, reconnect with backoff, exact catch-up by the
// last revision (`sync {after_rev}`), de-duplication by seq and revision, and a ping that notices
// a dead connection. The protocol is docs/realtime.md; the frames' types are generated from the
// server's (openapi.json's `ServerEvent` and `ClientEvent`).

import { type Auth, resolve, subprotocols } from "./auth.js";
import type { components } from "./schema.js";

type Schemas = components["schemas"];
export type Message = Schemas["Message"];
export type Session = Schemas["Session"];
export type Memory = Schemas["Memory"];
export type Change = Schemas["Change"];

/** A frame the server sends (`ServerEvent` in openapi.json, generated from the Rust type). */
export type ServerFrame = Schemas["ServerEvent"];
/** Each server frame's `data`, by event name. */
export type ServerEvents = { [F in ServerFrame as F["event"]]: F["data"] };
/** A frame the client sends (`ClientEvent` in openapi.json). */
export type ClientFrame = Schemas["ClientEvent"];

/** What a `ChatSocket` tells its listeners, once each, live or caught up. */
export interface SocketEvents {
    /** A message as it is now: appended, edited, a reply's checkpoint or end, a new variant. */
    message: { rev: number; message: Message };
    /** Messages hidden: the seqs named (delete, forget-recent) or every seq up to `through_seq` (new scene, reset). */
    deleted: { rev: number; seqs: number[] } | { rev: number; through_seq: number };
    session: { rev: number; session: Session };
    /** Another device of the user is typing, or a reply started (`true`) or ended (`false`). */
    typing: { is_typing: boolean };
    /** The next piece of a streaming reply. */
    delta: { seq: number; text: string };
    complete: { seq: number; message_id: string; tokens_used: number };
    /** A memory of this session added (read from its turns, or added with its scope), changed or superseded, or deleted. */
    memory: { kind: "new" | "updated"; memory: Memory } | { kind: "deleted"; memory_id: string };
    /** A refusal (`daily_limit_exceeded`, `rate_limit`, …) or a frame the server did not understand. */
    error: { code: string; message: string };
    /** Caught up: every change up to `rev` has been delivered. */
    synced: { rev: number };
    state: { state: "connecting" | "open" | "closed"; attempt: number };
    /** Every frame as received, before de-duplication. */
    frame: ServerFrame;
}

type Listener<T> = (data: T) => void;

export interface ChatSocketOptions {
    /** The socket endpoint: `ws://127.0.0.1:3000/v1/ws` locally, the stack's `WebSocketUrl` on AWS. */
    url: string;
    sessionId: string;
    auth: Auth;
    /** The session revision already held (`session.rev` of the read the screen shows); 0 = everything. */
    afterRev?: number;
    /** Reads a message whose event came without its body (over 32 KB). */
    fetchMessage: (seq: number) => Promise<Message>;
    WebSocket?: typeof WebSocket;
    /** Reconnect backoff: `min(maxDelayMs, baseDelayMs · 2^attempt)`, jittered (500 ms, 15 s). */
    baseDelayMs?: number;
    maxDelayMs?: number;
    /** A ping after this much silence; no answer within `pongTimeoutMs` closes and reconnects (25 s, 10 s). */
    pingIntervalMs?: number;
    pongTimeoutMs?: number;
}

interface Held {
    rev: number;
    /** What was last delivered for the seq, to drop a repeat of the same state. */
    fingerprint: string;
}

const QUEUE_LIMIT = 100;

export class ChatSocket {
    readonly sessionId: string;
    readonly #options: ChatSocketOptions;
    readonly #listeners = new Map<keyof SocketEvents, Set<Listener<never>>>();
    readonly #held = new Map<number, Held>();
    #cleared = { seq: 0, rev: 0 };
    /** Every revision up to this one has been delivered; what a reconnect syncs from. */
    #rev: number;
    /** Revisions delivered above `#rev` (live events can arrive out of order across the two tables' streams). */
    readonly #ahead = new Set<number>();
    #socket: WebSocket | null = null;
    #attempt = 0;
    #closed = false;
    #queue: string[] = [];
    #timer: ReturnType<typeof setTimeout> | null = null;
    #ping: ReturnType<typeof setTimeout> | null = null;
    #pong: ReturnType<typeof setTimeout> | null = null;

    constructor(options: ChatSocketOptions) {
        this.#options = options;
        this.sessionId = options.sessionId;
        this.#rev = options.afterRev ?? 0;
        void this.#connect();
    }

    /** The revision every change up to which has been delivered. */
    get rev(): number {
        return this.#rev;
    }

    get open(): boolean {
        return this.#socket?.readyState === 1;
    }

    on<K extends keyof SocketEvents>(event: K, listener: Listener<SocketEvents[K]>): () => void {
        let set = this.#listeners.get(event);
        if (!set) this.#listeners.set(event, (set = new Set()));
        set.add(listener as Listener<never>);
        return () => set.delete(listener as Listener<never>);
    }

    /**
     * What `POST …/replies` does; the reply streams to every connection of the session. Sent at
     * once when connected, else when the socket reconnects; the idempotency key (one is made when
     * not given) keeps a resend from appending twice.
     */
    sendMessage(content: string, idempotencyKey: string = crypto.randomUUID()): string {
        this.#send({ event: "send_message", data: { content, idempotency_key: idempotencyKey } }, true);
        return idempotencyKey;
    }

    /** Tells the user's other devices; dropped while disconnected (it is never stored). */
    typing(isTyping: boolean): void {
        this.#send({ event: "typing", data: { is_typing: isTyping } }, false);
    }

    /** Asks for every change after the revision held (done by itself on each connect). */
    sync(): void {
        this.#send({ event: "sync", data: { after_rev: this.#rev } }, false);
    }

    close(): void {
        this.#closed = true;
        this.#clearTimers();
        this.#socket?.close(1000);
        this.#socket = null;
        this.#emit("state", { state: "closed", attempt: this.#attempt });
    }

    async #connect(): Promise<void> {
        if (this.#closed) return;
        this.#emit("state", { state: "connecting", attempt: this.#attempt });
        const Socket = this.#options.WebSocket ?? globalThis.WebSocket;
        const url = new URL(this.#options.url);
        url.searchParams.set("session_id", this.sessionId);
        let socket: WebSocket;
        try {
            socket = new Socket(url.toString(), subprotocols(await resolve(this.#options.auth)));
        } catch {
            this.#retry();
            return;
        }
        this.#socket = socket;
        socket.onopen = () => {
            this.#attempt = 0;
            this.#emit("state", { state: "open", attempt: 0 });
            this.sync();
            for (const frame of this.#queue.splice(0)) socket.send(frame);
            this.#schedulePing();
        };
        socket.onmessage = (message: MessageEvent) => {
            if (typeof message.data !== "string") return;
            this.#schedulePing();
            let frame: ServerFrame;
            try {
                frame = JSON.parse(message.data) as ServerFrame;
            } catch {
                return;
            }
            void this.#receive(frame);
        };
        socket.onclose = () => {
            if (this.#socket !== socket) return;
            this.#socket = null;
            this.#clearTimers();
            this.#retry();
        };
    }

    #retry(): void {
        if (this.#closed) return;
        this.#emit("state", { state: "closed", attempt: this.#attempt });
        const base = this.#options.baseDelayMs ?? 500;
        const ceiling = Math.min(this.#options.maxDelayMs ?? 15_000, base * 2 ** this.#attempt);
        this.#attempt += 1;
        this.#timer = setTimeout(() => void this.#connect(), ceiling / 2 + Math.random() * (ceiling / 2));
    }

    #send(frame: ClientFrame, queue: boolean): void {
        const text = JSON.stringify(frame);
        if (this.open) this.#socket?.send(text);
        else if (queue && this.#queue.length < QUEUE_LIMIT) this.#queue.push(text);
    }

    #schedulePing(): void {
        if (this.#ping) clearTimeout(this.#ping);
        if (this.#pong) clearTimeout(this.#pong);
        this.#pong = null;
        this.#ping = setTimeout(() => {
            this.#send({ event: "ping" }, false);
            this.#pong = setTimeout(() => this.#socket?.close(4000, "no pong"), this.#options.pongTimeoutMs ?? 10_000);
        }, this.#options.pingIntervalMs ?? 25_000);
    }

    #clearTimers(): void {
        for (const timer of [this.#timer, this.#ping, this.#pong]) if (timer) clearTimeout(timer);
        this.#timer = this.#ping = this.#pong = null;
    }

    async #receive(frame: ServerFrame): Promise<void> {
        this.#emit("frame", frame);
        switch (frame.event) {
            case "message.new":
            case "message.updated": {
                const { seq, rev } = frame.data;
                const message = frame.data.message ?? (await this.#options.fetchMessage(seq).catch(() => null));
                if (message) this.#applyMessage(rev, message);
                this.#delivered(rev);
                break;
            }
            case "message.deleted":
                this.#applyDeleted(frame.data.rev, frame.data.seqs, frame.data.through_seq);
                this.#delivered(frame.data.rev);
                break;
            case "session.updated":
                // Its rev is the session's; log changes before it may still be on their way.
                this.#emit("session", { rev: frame.data.rev, session: frame.data.session });
                break;
            case "message.typing":
                this.#emit("typing", { is_typing: frame.data.is_typing });
                break;
            case "message.delta":
                this.#emit("delta", { seq: frame.data.seq, text: frame.data.text });
                break;
            case "message.complete":
                this.#emit("complete", { seq: frame.data.seq, message_id: frame.data.message_id, tokens_used: frame.data.tokens_used });
                break;
            case "memory.new":
            case "memory.updated":
                this.#emit("memory", { kind: frame.event === "memory.new" ? "new" : "updated", memory: frame.data.memory });
                break;
            case "memory.deleted":
                this.#emit("memory", { kind: "deleted", memory_id: frame.data.memory_id });
                break;
            case "changes":
                await this.#applyChanges(frame.data);
                break;
            case "error":
                this.#emit("error", frame.data);
                break;
            case "pong":
                break;
        }
    }

    async #applyChanges(page: ServerEvents["changes"]): Promise<void> {
        for (const change of page.data) {
            if (change.type === "message") this.#applyMessage(change.rev, change.message);
            else if (change.type === "deleted") this.#applyDeleted(change.rev, [change.seq], undefined);
            else if (change.type === "cleared") this.#applyDeleted(change.rev, undefined, change.through_seq);
            else {
                const message = await this.#options.fetchMessage(change.seq).catch(() => null);
                if (message) this.#applyMessage(change.rev, message);
            }
        }
        // The feed is exact up to where it says to go on from.
        if (page.next_after_rev > this.#rev) this.#rev = page.next_after_rev;
        for (const rev of this.#ahead) if (rev <= this.#rev) this.#ahead.delete(rev);
        this.#advance();
        if (page.has_more) this.sync();
        else this.#emit("synced", { rev: this.#rev });
    }

    #applyMessage(rev: number, message: Message): void {
        const held = this.#held.get(message.seq);
        if (held && held.rev > rev) return;
        if (message.seq <= this.#cleared.seq && rev < this.#cleared.rev) return;
        const fingerprint = `${message.status}|${message.variant}|${message.edited_at}|${message.content.length}|${message.content.slice(-16)}`;
        if (held && held.rev === rev && held.fingerprint === fingerprint) return;
        this.#held.set(message.seq, { rev, fingerprint });
        this.#emit("message", { rev, message });
    }

    #applyDeleted(rev: number, seqs: number[] | undefined, through: number | undefined): void {
        if (through !== undefined) {
            if (this.#cleared.rev >= rev) return;
            this.#cleared = { seq: Math.max(through, this.#cleared.seq), rev };
            this.#emit("deleted", { rev, through_seq: through });
            return;
        }
        const fresh = (seqs ?? []).filter((seq) => (this.#held.get(seq)?.rev ?? 0) < rev);
        if (fresh.length === 0) return;
        for (const seq of fresh) this.#held.set(seq, { rev, fingerprint: "deleted" });
        this.#emit("deleted", { rev, seqs: fresh });
    }

    #delivered(rev: number): void {
        if (rev > this.#rev) this.#ahead.add(rev);
        this.#advance();
    }

    #advance(): void {
        while (this.#ahead.delete(this.#rev + 1)) this.#rev += 1;
    }

    #emit<K extends keyof SocketEvents>(event: K, data: SocketEvents[K]): void {
        for (const listener of this.#listeners.get(event) ?? []) {
            try {
                (listener as Listener<SocketEvents[K]>)(data);
            } catch (error) {
                console.error(`a ${event} listener threw`, error);
            }
        }
    }
}
