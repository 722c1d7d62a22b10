// The app's shell: sign-in (Telegram init data inside Telegram, a dev token elsewhere), the header
// with the limits badge, hash routing between the catalog, a character's chat (#/c/<id>) and a
// group chat (#/g/<session>), and the notice line.

import { type Auth, type ChatClient, type components, bearer, createChatClient, telegramWebApp, unwrap } from "@chat-backend/client";

import { showCatalog } from "./catalog.js";
import { openChat } from "./chat.js";
import { byId, h, time } from "./dom.js";
import { describe } from "./errors.js";
import { setUpPanels } from "./panels.js";

type Schemas = components["schemas"];

interface ChatConfig {
    apiBaseUrl?: string;
    streamUrl?: string;
    socketUrl?: string;
    devSignIn?: boolean;
}

declare global {
    interface Window {
        CHAT_CONFIG?: ChatConfig;
        Telegram?: { WebApp?: TelegramWebApp };
    }
}

interface TelegramWebApp {
    initData: string;
    ready(): void;
    expand(): void;
    colorScheme?: string;
}

const TOKEN_KEY = "chat.token";
const config: ChatConfig = window.CHAT_CONFIG ?? {};
const apiBaseUrl = config.apiBaseUrl || location.origin;

export interface App {
    client: ChatClient;
    /** Shows one sentence about an error (or any text) above the view. */
    notify(message: unknown): void;
    clearNotice(): void;
    setTitle(title: string, back: boolean): void;
    /** The quota, in its one shape (`/v1/limits`, a reply's answer, a 429, a socket refusal). */
    showLimits(limits: { total: number; used: number; remaining: number; resets_at: string } | null, subscription?: boolean): void;
    refreshLimits(): Promise<void>;
    signOut(): void;
    /** The chat on screen, if any: the memories panel shows its memories beside the user's. */
    chatSession: string | null;
}

/** Telegram's script, loaded only when Telegram opened the page (its URL carries `tgWebAppData`). */
async function telegram(): Promise<Auth | null> {
    if (!window.Telegram?.WebApp && /tgWebAppData=/.test(location.hash)) {
        await new Promise<void>((resolve) => {
            const script = h("script", { src: "https://telegram.org/js/telegram-web-app.js" });
            script.addEventListener("load", () => resolve());
            script.addEventListener("error", () => resolve());
            document.head.append(script);
        });
    }
    const webApp = window.Telegram?.WebApp;
    const auth = telegramWebApp(window);
    if (webApp && auth) {
        document.documentElement.classList.add("telegram");
        webApp.ready();
        webApp.expand();
    }
    return auth;
}

function storedToken(): string | null {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) return null;
    try {
        const payload = JSON.parse(atob(token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/"))) as { exp?: number };
        if (payload.exp && payload.exp * 1000 > Date.now() + 60_000) return token;
    } catch {
        // not a JWT we can read: ask again
    }
    localStorage.removeItem(TOKEN_KEY);
    return null;
}

function signInForm(view: HTMLElement): Promise<Auth> {
    return new Promise((resolve) => {
        const error = h("p", { class: "hint", role: "alert" });
        const name = h("input", { name: "user", required: true, pattern: "[A-Za-z0-9_\\-]{1,64}", autocomplete: "username", placeholder: "alice" });
        const token = h("input", { name: "token", autocomplete: "off", placeholder: "eyJ…" });
        const form = h(
            "form",
            { class: "sign-in", "aria-labelledby": "sign-in-title" },
            h("h2", { id: "sign-in-title" }, "Sign in"),
            config.devSignIn !== false && h("label", {}, "Your name (a local dev account)", name),
            h("label", {}, "…or paste a token (JWT)", token),
            h("button", { type: "submit", class: "primary" }, "Sign in"),
            error,
        );
        if (config.devSignIn !== false) token.removeAttribute("required");
        else name.removeAttribute("required");
        form.addEventListener("submit", async (event) => {
            event.preventDefault();
            let value = token.value.trim();
            if (!value) {
                const response = await fetch(`${apiBaseUrl}/dev/token`, {
                    method: "POST",
                    headers: { "Content-Type": "application/json" },
                    body: JSON.stringify({ user_id: name.value.trim() }),
                }).catch(() => null);
                const body = (await response?.json().catch(() => null)) as { token?: string; message?: string } | null;
                if (!response?.ok || !body?.token) {
                    error.textContent = body?.message ?? "The dev sign-in is not available on this server: paste a token.";
                    return;
                }
                value = body.token;
            }
            localStorage.setItem(TOKEN_KEY, value);
            resolve(bearer(value));
        });
        view.replaceChildren(form);
        name.focus();
    });
}

async function start(): Promise<void> {
    const view = byId("view");
    const auth = (await telegram()) ?? (storedToken() ? bearer(storedToken()!) : await signInForm(view));
    const client = createChatClient({
        baseUrl: apiBaseUrl,
        auth,
        ...(config.streamUrl ? { streamUrl: config.streamUrl } : {}),
        ...(config.socketUrl ? { socketUrl: config.socketUrl } : {}),
    });
    const notice = byId("notice");
    const limits = byId("limits");
    const app: App = {
        client,
        chatSession: null,
        notify(message) {
            byId("notice-text").textContent = typeof message === "string" ? message : describe(message);
            notice.hidden = false;
        },
        clearNotice() {
            notice.hidden = true;
        },
        setTitle(title, back) {
            byId("title").textContent = title;
            byId("back").hidden = !back;
            document.title = title;
        },
        showLimits(view, subscription = false) {
            if (!view) return;
            const total = view.total;
            if (subscription || total < 0) {
                limits.textContent = "Unlimited";
                limits.className = "badge";
                return;
            }
            limits.textContent = `${view.remaining}/${total} left`;
            limits.title = `Messages left today; resets at ${time(view.resets_at)}`;
            limits.className = view.remaining <= 3 ? "badge low" : "badge";
        },
        async refreshLimits() {
            const view: Schemas["LimitsView"] = unwrap(await client.api.GET("/v1/limits"));
            app.showLimits(view.messages_limit, view.has_subscription);
        },
        signOut() {
            localStorage.removeItem(TOKEN_KEY);
            location.hash = "";
            location.reload();
        },
    };
    byId("notice-close").addEventListener("click", () => app.clearNotice());
    byId("back").addEventListener("click", () => (location.hash = "#/"));
    byId("bar").hidden = false;
    setUpPanels(app);
    await app.refreshLimits().catch((error) => app.notify(error));

    let leave: (() => void) | null = null;
    const route = async () => {
        leave?.();
        leave = null;
        app.clearNotice();
        const chat = /^#\/c\/([a-z0-9][a-z0-9_-]{0,63})$/.exec(location.hash);
        const group = /^#\/g\/([0-9a-f-]{36})$/.exec(location.hash);
        if (chat) leave = await openChat(app, view, { character: chat[1]! });
        else if (group) leave = await openChat(app, view, { session: group[1]! });
        else leave = await showCatalog(app, view);
    };
    window.addEventListener("hashchange", () => void route());
    await route();
}

start().catch((error) => {
    byId("view").replaceChildren(h("p", { class: "empty", role: "alert" }, describe(error)));
});
