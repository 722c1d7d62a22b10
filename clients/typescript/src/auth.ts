// Credentials: a bearer token (a JWT from your identity provider) or Telegram Mini App init data.
// The HTTP API takes them as `Authorization: Bearer <jwt>` / `Authorization: tma <initData>`; the
// socket, which browsers cannot give headers, as a `Sec-WebSocket-Protocol` entry next to `chat.v1`.

export type Credential = { readonly scheme: "bearer"; readonly token: string } | { readonly scheme: "tma"; readonly initData: string };

/** A credential, or a function that returns the current one (e.g. a token that is refreshed). */
export type Auth = Credential | (() => Credential | Promise<Credential>);

/** `Authorization: Bearer <token>`; pass a function to hand out a refreshed token per request. */
export function bearer(token: string | (() => string | Promise<string>)): Auth {
    if (typeof token === "string") return { scheme: "bearer", token };
    return async () => ({ scheme: "bearer", token: await token() });
}

/** `Authorization: tma <initData>`: the raw `Telegram.WebApp.initData` string, verified by the server. */
export function telegram(initData: string): Auth {
    return { scheme: "tma", initData };
}

interface TelegramWindow {
    Telegram?: { WebApp?: { initData?: string } };
}

/** Inside a Telegram Mini App, its init data as the credential; `null` anywhere else. */
export function telegramWebApp(scope: unknown = globalThis): Auth | null {
    const initData = (scope as TelegramWindow).Telegram?.WebApp?.initData;
    return initData ? telegram(initData) : null;
}

export async function resolve(auth: Auth): Promise<Credential> {
    return typeof auth === "function" ? auth() : auth;
}

/** The `Authorization` header's value. */
export function authorization(credential: Credential): string {
    return credential.scheme === "bearer" ? `Bearer ${credential.token}` : `tma ${credential.initData}`;
}

/** The socket's subprotocols: `chat.v1` and the credential (init data as base64url, which a subprotocol can carry). */
export function subprotocols(credential: Credential): string[] {
    const entry = credential.scheme === "bearer" ? `bearer.${credential.token}` : `tma.${base64url(credential.initData)}`;
    return ["chat.v1", entry];
}

function base64url(text: string): string {
    let binary = "";
    for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
