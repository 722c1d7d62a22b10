// The server under test: CHAT_API_URL when set (scripts/web-test.sh starts one for every test
// file), else one started here by scripts/test-server.sh (DynamoDB Local, the dev server and the
// local model) for this file alone. Every test signs in as a user of its own.

import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { type ChatClient, bearer, createChatClient, telegram } from "../src/index.js";

const root = fileURLToPath(new URL("../../../..", import.meta.url));

async function startServer(): Promise<{ api: string; faults: string }> {
    const child = spawn("bash", [`${root}/scripts/test-server.sh`], { stdio: ["ignore", "pipe", "inherit"], detached: true });
    const stop = () => {
        try {
            process.kill(-child.pid!, "SIGTERM");
        } catch {
            // already gone
        }
    };
    process.on("exit", stop);
    // A runner's or a timeout's signal would skip the exit hook.
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
        process.once(signal, () => {
            stop();
            process.exit(128 + (signal === "SIGINT" ? 2 : 15));
        });
    }
    let api = "";
    for await (const line of createInterface({ input: child.stdout! })) {
        if (line.startsWith("http")) api = line.trim();
        if (line.startsWith("model-faults ") && api) {
            child.stdout!.resume();
            // The server must not keep this test process alive: once its tests end, it exits
            // and the exit hook stops the server's process group.
            child.unref();
            (child.stdout as unknown as { unref?: () => void }).unref?.();
            return { api, faults: line.slice("model-faults ".length).trim() };
        }
    }
    throw new Error("scripts/test-server.sh ended without serving");
}

const started = process.env.CHAT_API_URL ? null : await startServer();
export const baseUrl = process.env.CHAT_API_URL ?? started!.api;
/** scripts/model-faults.py in front of the server's model (MODEL_FAULTS_URL with CHAT_API_URL). */
export const modelFaultsUrl = process.env.MODEL_FAULTS_URL ?? started?.faults;
/** The bot token the server checks Telegram init data with (scripts/test-server.sh's default). */
export const botToken = process.env.TELEGRAM_BOT_TOKEN ?? "123456789:test-bot-token-for-local-tests";
/** The daily quota the server runs with (scripts/test-server.sh's default). */
export const dailyQuota = Number(process.env.DAILY_MESSAGE_QUOTA ?? 12);

export async function devToken(name: string): Promise<string> {
    const response = await fetch(`${baseUrl}/dev/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user_id: `${name}-${randomUUID().slice(0, 8)}` }),
    });
    if (!response.ok) throw new Error(`POST /dev/token: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { token: string }).token;
}

/** A client signed in as a new user. */
export async function signIn(name: string, fetcher?: typeof fetch): Promise<ChatClient> {
    return createChatClient({ baseUrl, auth: bearer(await devToken(name)), ...(fetcher ? { fetch: fetcher } : {}) });
}

/** Telegram Mini App init data for `user`, signed as Telegram signs it (HMAC-SHA256 under HMAC("WebAppData", bot token)). */
export function initData(user: { id: number; first_name: string; username?: string; language_code?: string }, token = botToken): string {
    const fields = new URLSearchParams({ auth_date: String(Math.floor(Date.now() / 1000)), query_id: randomUUID(), user: JSON.stringify(user) });
    const check = [...fields.entries()].map(([key, value]) => `${key}=${value}`).sort().join("\n");
    const secret = createHmac("sha256", "WebAppData").update(token).digest();
    fields.set("hash", createHmac("sha256", secret).update(check).digest("hex"));
    return fields.toString();
}

export function telegramClient(data: string): ChatClient {
    return createChatClient({ baseUrl, auth: telegram(data) });
}

/**
 * Makes the next reply to a message containing `word` stop arriving once `afterChars` characters of
 * the model's text went through (enough for the first whole segments to reach the caller as
 * deltas), held open until it is cancelled: a reply still streaming, however fast the model.
 */
export async function stallNextReply(word: string, afterChars = 24): Promise<void> {
    if (!modelFaultsUrl) throw new Error("MODEL_FAULTS_URL is not set (scripts/test-server.sh prints it)");
    const response = await fetch(`${modelFaultsUrl}/faults/stall`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ when_prompt_contains: word, after_chars: afterChars }),
    });
    if (!response.ok) throw new Error(`arming the stall: ${response.status} ${await response.text()}`);
}

/** Resolves with the first value `take` returns that is not undefined, polling listeners' state. */
export async function eventually<T>(take: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = take();
        if (value !== undefined) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
}
