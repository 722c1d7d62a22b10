// The web app in a real headless Chromium (Debian's, driven by Playwright) against the dev server
// with DynamoDB Local and the local model: nothing here stands in for the API. Each step leaves a
// screenshot in web/test-artifacts/.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";

import { chromium } from "playwright-core";

import { baseUrl, dailyQuota, initData, stallNextReply } from "../../clients/typescript/dist/test/server.js";

const artifacts = new URL("../test-artifacts/", import.meta.url).pathname;
mkdirSync(artifacts, { recursive: true });
const user = `web-${Math.random().toString(36).slice(2, 8)}`;
let browser, context, page, second, token;
// Every console error and uncaught exception of every tab, checked at the end. The API's
// deliberate refusals (a 403 gate, a 429 quota) are logged by Chromium as failed loads: only
// those of /v1/ count as expected.
const problems = [];
function watch(tab) {
    tab.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    tab.on("console", (entry) => {
        if (entry.type() !== "error" && entry.type() !== "warning") return;
        const url = entry.location()?.url ?? "";
        if (entry.text().startsWith("Failed to load resource") && new URL(url, baseUrl).pathname.startsWith("/v1/")) return;
        problems.push(`console ${entry.type()}: ${entry.text()} (${url})`);
    });
    return tab;
}

const shot = (target, name) => target.screenshot({ path: `${artifacts}${name}.png`, fullPage: true });
const message = (target, seq) => target.locator(`.msg[data-seq="${seq}"]`);
const bubble = (target, seq) => message(target, seq).locator(".bubble");
async function api(method, path, body) {
    const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    assert.ok(response.ok, `${method} ${path}: ${response.status}`);
    return response.status === 204 ? null : response.json();
}

before(async () => {
    browser = await chromium.launch({
        executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
        args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    // A phone-sized screen: Telegram is mostly phones.
    context = await browser.newContext({ viewport: { width: 390, height: 780 }, deviceScaleFactor: 1 });
    page = watch(await context.newPage());
    page.on("dialog", (dialog) => dialog.accept());
});

after(async () => {
    await browser?.close();
});

test("the bundle stays in its budget", () => {
    const bytes = readFileSync(new URL("../dist/assets/app.js", import.meta.url));
    const gzipped = gzipSync(bytes).length;
    console.log(`app.js: ${statSync(new URL("../dist/assets/app.js", import.meta.url)).size} bytes, ${gzipped} gzipped`);
    assert.ok(gzipped <= 150 * 1024, `app.js is ${gzipped} bytes gzipped, over 150 KB`);
});

test("sign in with a dev account and see the catalog", async () => {
    const started = Date.now();
    await page.goto(baseUrl);
    // The name's pattern is a valid regular expression (HTML patterns use the `v` flag) and
    // refuses what the dev sign-in refuses.
    const name = page.getByLabel("Your name (a local dev account)");
    await name.fill("a b");
    assert.equal(await name.evaluate((input) => input.validity.patternMismatch), true);
    await name.fill(user);
    assert.equal(await name.evaluate((input) => input.validity.valid), true);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator(".cards .card").first().waitFor();
    console.log(`sign-in to catalog: ${Date.now() - started} ms`);
    assert.equal(await page.locator(".cards .card").count(), 5);
    assert.match(await page.locator("#limits").innerText(), new RegExp(`^${dailyQuota}/${dailyQuota} left$`));
    token = await page.evaluate(() => localStorage.getItem("chat.token"));
    assert.ok(token);
    // Every control has a name a screen reader can say.
    const unnamed = await page.evaluate(() =>
        [...document.querySelectorAll("button, input, select, textarea")].filter((element) => {
            if (element.closest("[hidden], dialog:not([open])")) return false;
            const label = element.getAttribute("aria-label") || element.textContent?.trim() || element.labels?.[0]?.textContent?.trim();
            return !label;
        }).length,
    );
    assert.equal(unnamed, 0);
    await shot(page, "01-catalog");
});

test("a reload renders the catalog signed in, and fast", async () => {
    await page.reload();
    await page.locator(".cards .card").first().waitFor();
    const timing = await page.evaluate(() => {
        const navigation = performance.getEntriesByType("navigation")[0];
        const paint = performance.getEntriesByName("first-contentful-paint")[0];
        return { domContentLoaded: navigation.domContentLoadedEventEnd, firstPaint: paint?.startTime ?? null, now: performance.now() };
    });
    console.log(`first render: DOMContentLoaded ${timing.domContentLoaded.toFixed(0)} ms, first contentful paint ${timing.firstPaint?.toFixed(0)} ms, catalog shown by ${timing.now.toFixed(0)} ms`);
    assert.equal(await page.locator(".cards .card").count(), 5);
});

// Waits until the catalog has settled on exactly these characters. Waiting for a count alone
// passes on the list a filter is about to replace (the search's one card before the rating's).
async function cardsAre(target, names) {
    await target.waitForFunction((want) => {
        const list = document.querySelector(".cards");
        const shown = [...list.querySelectorAll(".card .name")].map((name) => name.textContent).sort();
        return list.getAttribute("aria-busy") === "false" && JSON.stringify(shown) === JSON.stringify(want);
    }, [...names].sort());
}

test("search and filters narrow the catalog", async () => {
    await page.getByLabel("Search characters").fill("LUNA");
    await cardsAre(page, ["Luna"]);
    assert.equal(await page.locator('main p[role="status"]').textContent(), "1 character");
    await shot(page, "02-search");
    await page.getByLabel("Search characters").fill("");
    await page.getByLabel("Rating", { exact: true }).selectOption("nsfw");
    await cardsAre(page, ["Noir"]);
    await page.getByLabel("Rating", { exact: true }).selectOption("");
    await page.getByLabel("Access", { exact: true }).selectOption("premium");
    await cardsAre(page, ["Sage"]);
    await page.getByLabel("Access", { exact: true }).selectOption("");
    await page.getByLabel("Tag", { exact: true }).selectOption("space");
    await cardsAre(page, ["Luna", "Captain Rhea"]);
    await shot(page, "03-filters");
});

test("a chat opens with the character's greeting, in two tabs", async () => {
    await page.locator('[data-character="luna"]').click();
    await bubble(page, 1).waitFor();
    assert.match(await bubble(page, 1).innerText(), /^Hi, I'm Luna!/);
    second = watch(await context.newPage());
    second.on("dialog", (dialog) => dialog.accept());
    await second.goto(`${baseUrl}/#/c/luna`);
    await bubble(second, 1).waitFor();
    for (const tab of [page, second]) await tab.locator('.chat[data-socket="open"]').waitFor();
    await shot(page, "04-greeting");
});

test("a message gets a reply streamed token by token, and the other tab follows", async () => {
    // Watch the reply's bubble grow.
    await page.evaluate(() => {
        window.lengths = new Set();
        new MutationObserver(() => {
            const text = document.querySelector('.msg[data-seq="3"] .bubble')?.textContent ?? "";
            if (text && text !== "…") window.lengths.add(text.length);
        }).observe(document.querySelector(".log"), { subtree: true, childList: true, characterData: true });
    });
    await page.getByLabel("Your message").fill("Tell me about the moon.");
    await page.getByLabel("Your message").press("Enter");
    await page.locator("#typing", { hasText: "Luna is typing…" }).waitFor();
    await page.locator('.msg[data-seq="3"]:is([data-status="complete"], [data-status="incomplete"])').waitFor();
    const lengths = await page.evaluate(() => window.lengths.size);
    assert.ok(lengths >= 3, `the reply arrived in ${lengths} steps`);
    const stored = await api("GET", `/v1/sessions/${await sessionId()}/messages/3`);
    assert.equal(await bubble(page, 3).textContent(), stored.content);
    assert.equal(await page.locator("#typing").innerText(), "");
    await shot(page, "05-reply");

    await message(second, 3).and(second.locator(`[data-status="${stored.status}"]`)).waitFor();
    assert.equal(await bubble(second, 2).innerText(), "Tell me about the moon.");
    assert.equal(await bubble(second, 3).textContent(), stored.content);
    // The message spent a unit of the quota: both tabs' badges say so.
    for (const tab of [page, second]) await tab.locator("#limits", { hasText: `${dailyQuota - 1}/${dailyQuota} left` }).waitFor();
    await shot(second, "06-second-tab");
});

async function sessionId() {
    const chat = await api("GET", "/v1/characters/luna/session");
    return chat.id;
}

test("regenerate makes a second variant; the first stays readable", async () => {
    const firstText = await bubble(page, 3).innerText();
    await message(page, 3).getByRole("button", { name: "Regenerate" }).click();
    await message(page, 3).locator(".variant", { hasText: "2/2" }).waitFor();
    await page.locator('.msg[data-seq="3"]:not([data-status="streaming"])').waitFor();
    await message(page, 3).getByRole("button", { name: "Previous variant" }).click();
    await message(page, 3).locator(".variant", { hasText: "1/2" }).waitFor();
    assert.equal(await bubble(page, 3).innerText(), firstText);
    await shot(page, "07-variants");
});

test("stop cancels a reply mid-stream and keeps its text", async () => {
    // The local model often answers in a fifth of a second: this reply stops arriving after 24
    // characters and stays open (a stuck provider), so Stop meets a reply that is still streaming.
    const word = `stall-${Math.random().toString(36).slice(2, 10)}`;
    await stallNextReply(word);
    await page.getByLabel("Your message").fill(`Count from 1 to 300, one number per line. (${word})`);
    await page.getByRole("button", { name: "Send" }).click();
    await page.locator('.msg[data-seq="5"][data-status="streaming"]').waitFor();
    await page.waitForFunction(() => (document.querySelector('.msg[data-seq="5"] .bubble')?.textContent ?? "…") !== "…");
    await page.locator("#stop:not([disabled])").click();
    await page.locator('.msg[data-seq="5"][data-status="cancelled"]').waitFor();
    assert.match(await message(page, 5).locator(".status").innerText(), /stopped/);
    const stored = await api("GET", `/v1/sessions/${await sessionId()}/messages/5`);
    assert.equal(stored.status, "cancelled");
    assert.ok(stored.content.length > 0);
    assert.equal(await bubble(page, 5).textContent(), stored.content);
    await second.locator('.msg[data-seq="5"][data-status="cancelled"]').waitFor();
    await shot(page, "08-stopped");
});

test("edit and delete the user's messages, in both tabs", async () => {
    await message(page, 2).getByRole("button", { name: "Edit message 2" }).click();
    await page.getByLabel("New text of message 2").fill("Tell me about Mars.");
    await page.getByRole("button", { name: "Save" }).click();
    await bubble(page, 2).filter({ hasText: "Tell me about Mars." }).waitFor();
    await bubble(second, 2).filter({ hasText: "Tell me about Mars." }).waitFor();
    assert.match(await message(second, 2).locator(".meta").innerText(), /edited/);
    await message(page, 4).getByRole("button", { name: "Delete message 4" }).click();
    await message(page, 4).waitFor({ state: "detached" });
    await message(second, 4).waitFor({ state: "detached" });
    await shot(second, "09-edited-deleted");
});

test("forget-recent, new scene and reset clear the log in both tabs", async () => {
    await page.getByRole("button", { name: "Forget last 2" }).click();
    for (const tab of [page, second]) {
        await message(tab, 5).waitFor({ state: "detached" });
        await message(tab, 3).waitFor({ state: "detached" });
        assert.equal(await tab.locator(".msg").count(), 2);
    }
    await page.getByRole("button", { name: "New scene" }).click();
    for (const tab of [page, second]) await tab.waitForFunction(() => document.querySelectorAll(".msg").length === 0);
    await shot(second, "10-new-scene");
    await page.getByLabel("Your message").fill("A new beginning.");
    await page.getByLabel("Your message").press("Enter");
    await page.locator('.msg[data-seq="7"]:not([data-status="streaming"])').waitFor();
    await second.locator('.msg[data-seq="7"]').waitFor();
    await page.getByRole("button", { name: "Reset" }).click();
    // A character chat starts again with its greeting.
    for (const tab of [page, second]) {
        await tab.waitForFunction(() => document.querySelectorAll(".msg").length === 1 && document.querySelector('.msg[data-seq="8"]'));
        assert.match(await bubble(tab, 8).innerText(), /^Hi, I'm Luna!/);
    }
});

test("a chat's title fits a phone's bar", async () => {
    await page.goto(`${baseUrl}/#/c/chef-marco`);
    await bubble(page, 1).waitFor();
    const title = page.locator("#title");
    assert.equal(await title.innerText(), "Chef Marco");
    const clipped = await title.evaluate((element) => element.scrollWidth > element.clientWidth);
    assert.equal(clipped, false, "the title is cut at 390 px");
    await shot(page, "17-title");
    await page.goto(`${baseUrl}/#/c/luna`);
    await bubble(page, 8).waitFor();
});

test("a memory of the chat shows a note, and the open panel follows it live", async () => {
    const session = await sessionId();
    await api("POST", "/v1/memories", { content: "Saw a comet over the sea", memory_type: "fact", session_id: session });
    await page.locator("#remembered", { hasText: "Luna remembered: “Saw a comet over the sea”" }).waitFor();
    await shot(page, "18-remembered");
    await page.getByRole("button", { name: "Memories" }).click();
    await page.locator("#memory-list li[data-memory]", { hasText: "Saw a comet over the sea" }).waitFor();
    // Added elsewhere while the panel is open: it appears without a reload, and goes the same way.
    const later = await api("POST", "/v1/memories", { content: "Wants to sail north", memory_type: "preference", session_id: session });
    await page.locator("#memory-list li[data-memory]", { hasText: "Wants to sail north" }).waitFor();
    await api("DELETE", `/v1/memories/${later.id}`);
    await page.locator("#memory-list li[data-memory]", { hasText: "Wants to sail north" }).waitFor({ state: "detached" });
    await page.getByRole("button", { name: /Delete the memory “Saw a comet/ }).click();
    await page.waitForFunction(() => document.querySelectorAll("#memory-list li[data-memory]").length === 0);
    await page.locator("#memories").getByRole("button", { name: "Close" }).click();
});

test("a chat asks the device for its local time: the call shows, collapsed, and the app answers it", async () => {
    const { id: session } = await api("POST", "/v1/sessions", { title: "Time check" });
    await page.goto(`${baseUrl}/#/g/${session}`);
    await page.locator('.chat[data-socket="open"]').waitFor();
    // Opening the assistant's own chat (no character) declares the app's tool.
    for (let tries = 0; (await api("GET", `/v1/sessions/${session}`)).tools.length === 0; tries += 1) {
        assert.ok(tries < 100, "the app declared local_time");
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The model is made to call the app's tool (as it may on its own): the reply pauses.
    const turn = await api("POST", `/v1/sessions/${session}/replies`, { content: "What time is it for me?", tool_choice: { name: "local_time" } });
    const seq = turn.assistant_message.seq;
    assert.equal(turn.assistant_message.status, "requires_action");
    const call = page.locator(`.msg[data-seq="${seq}"] details.tool[data-tool="local_time"]`);
    await call.locator("summary", { hasText: "Used local_time" }).waitFor();
    await page.locator(`.msg[data-seq="${seq}"]:is([data-status="complete"], [data-status="incomplete"])`).waitFor();
    const stored = await api("GET", `/v1/sessions/${session}/messages/${seq}`);
    const result = stored.parts.find((part) => part.type === "tool_result");
    const zone = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
    assert.equal(result.output.time_zone, zone, "the browser's own answer");
    assert.equal(await call.evaluate((element) => element.open), false, "collapsed");
    await call.locator("summary").click();
    assert.match(await call.locator("pre").innerText(), /time_zone/);
    await shot(page, "21-tool-call");
});

test("the memories panel lists, deletes one, deletes all", async () => {
    await api("POST", "/v1/memories", { content: "Loves tiled facades", memory_type: "preference", importance: 7 });
    await api("POST", "/v1/memories", { content: "Has a cat named Miso", memory_type: "fact", importance: 5 });
    await page.getByRole("button", { name: "Memories" }).click();
    const items = page.locator("#memory-list li[data-memory]");
    await items.nth(1).waitFor();
    assert.equal(await items.count(), 2);
    await shot(page, "11-memories");
    await page.getByRole("button", { name: /Delete the memory “Has a cat/ }).click();
    await page.waitForFunction(() => document.querySelectorAll("#memory-list li[data-memory]").length === 1);
    await page.getByRole("button", { name: "Delete all" }).click();
    await page.locator("#memory-list", { hasText: "Nothing remembered yet." }).waitFor();
    assert.equal((await api("GET", "/v1/memories")).total, 0);
    await page.locator("#memories").getByRole("button", { name: "Close" }).click();
});

test("profile: name, language, and the 18+ confirmation that opens an adult character", async () => {
    await page.goto(`${baseUrl}/#/c/noir`);
    await page.locator("#notice", { hasText: "18+" }).waitFor();
    await shot(page, "12-adult-gate");
    await page.getByRole("button", { name: "Profile" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Ada");
    await page.getByLabel("Language", { exact: true }).selectOption("de");
    await page.getByRole("button", { name: "I am 18 or older" }).click();
    await page.locator("#adult-state", { hasText: "You confirmed" }).waitFor();
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#profile").waitFor({ state: "hidden" });
    const me = await api("GET", "/v1/me");
    assert.deepEqual([me.display_name, me.language, me.is_adult_confirmed], ["Ada", "de", true]);
    await page.reload();
    await bubble(page, 1).filter({ hasText: "Rain again." }).waitFor();
    await shot(page, "13-adult-chat");
});

test("a premium character says so", async () => {
    await page.goto(`${baseUrl}/#/c/sage`);
    await page.locator("#notice", { hasText: "subscribers" }).waitFor();
    await shot(page, "14-premium");
});

test("a group chat: two characters answer in turn, each named, and one can be asked", async () => {
    await page.goto(`${baseUrl}/#/`);
    await page.locator(".cards .card").first().waitFor();
    await page.getByLabel("Add Luna to a group chat").check();
    await page.getByLabel("Add Chef Marco to a group chat").check();
    await page.getByRole("button", { name: "Start a group chat with Luna, Chef Marco" }).click();
    await page.waitForURL(/#\/g\/[0-9a-f-]{36}$/);
    await page.locator("#title", { hasText: "Luna, Chef Marco" }).waitFor();
    await page.locator('.chat[data-socket="open"]').waitFor();
    const ended = (seq) => page.locator(`.msg[data-seq="${seq}"]:is([data-status="complete"], [data-status="incomplete"])`);
    // Everyone: Luna, then Chef Marco, each reply under its character's name.
    await page.getByLabel("Who answers").selectOption("all");
    await page.getByLabel("Your message").fill("Hello, both of you!");
    await page.getByLabel("Your message").press("Enter");
    for (const [seq, name] of [[2, "Luna"], [3, "Chef Marco"]]) {
        await ended(seq).waitFor({ timeout: 120_000 });
        assert.equal(await message(page, seq).locator(".speaker").innerText(), name);
    }
    assert.equal(await page.locator("#stop").isHidden(), true, "the round has ended");
    await shot(page, "19-group-round");
    // Ask one: only Chef Marco answers.
    await page.getByLabel("Who answers").selectOption({ label: "Ask Chef Marco" });
    await page.getByLabel("Your message").fill("Chef, what should I cook tonight?");
    await page.getByLabel("Your message").press("Enter");
    await ended(5).waitFor({ timeout: 120_000 });
    assert.equal(await message(page, 5).locator(".speaker").innerText(), "Chef Marco");
    await page.reload();
    await ended(5).waitFor();
    const speakers = await page.locator(".msg.assistant .speaker").allInnerTexts();
    assert.deepEqual(speakers, ["Luna", "Chef Marco", "Chef Marco"], "the names come back with the log");
    await shot(page, "20-group-ask");
    await page.goto(`${baseUrl}/#/`);
    await page.locator(".groups a", { hasText: "Luna, Chef Marco" }).waitFor();
});

test("a used-up quota shows the limit message and keeps the text", async () => {
    const limits = await api("GET", "/v1/limits");
    const left = limits.messages_limit.remaining;
    assert.ok(left > 0 && left < dailyQuota);
    const spare = await api("POST", "/v1/sessions", {});
    const messages = Array.from({ length: left }, (_, index) => ({ role: "user", content: `filler ${index}` }));
    await api("POST", `/v1/sessions/${spare.id}/messages/batch`, { messages });
    await page.goto(`${baseUrl}/#/c/luna`);
    await page.locator('.chat[data-socket="open"]').waitFor();
    await page.getByLabel("Your message").fill("One more, please.");
    await page.getByLabel("Your message").press("Enter");
    await page.locator("#notice", { hasText: "You have used all of today's messages." }).waitFor();
    assert.equal(await page.getByLabel("Your message").inputValue(), "One more, please.");
    assert.equal(await page.locator(".msg").count(), 1, "the greeting only");
    await shot(page, "15-quota");
    await page.reload();
    await page.locator("#limits", { hasText: `0/${dailyQuota} left` }).waitFor();
});

test("inside Telegram the app signs in with the init data", async () => {
    const id = 200_000 + Math.floor(Math.random() * 1_000_000);
    const data = initData({ id, first_name: "Tanya", username: "tanya", language_code: "uk" });
    const telegram = await browser.newContext({ viewport: { width: 390, height: 780 } });
    // Telegram's client injects its WebApp object; here the test does, with real signed init data.
    await telegram.addInitScript((initData) => {
        window.Telegram = { WebApp: { initData, ready() {}, expand() {} } };
    }, data);
    const tab = watch(await telegram.newPage());
    await tab.goto(baseUrl);
    await tab.locator(".cards .card").first().waitFor();
    assert.equal(await tab.getByLabel("Your name (a local dev account)").count(), 0);
    assert.ok(await tab.evaluate(() => document.documentElement.classList.contains("telegram")));
    await tab.getByRole("button", { name: "Profile" }).click();
    await tab.waitForFunction(() => document.querySelector('#profile [name="display_name"]').value === "Tanya");
    assert.match(await tab.locator("#adult-state").innerText(), /need your confirmation/);
    await shot(tab, "16-telegram");
    await telegram.close();
});

test("the app asks for nothing that is missing and logs no error", async () => {
    const favicon = await fetch(`${baseUrl}/favicon.ico`);
    assert.equal(favicon.status, 200);
    assert.match(favicon.headers.get("content-type") ?? "", /icon/);
    assert.deepEqual(problems, []);
});
