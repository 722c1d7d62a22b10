// The character catalog: search, filters (rating, access, tag, sort), one card per character;
// two or three ticked characters start a group chat, and the group chats so far are listed above.

import { type components, unwrap } from "@chat-backend/client";

import type { App } from "./app.js";
import { h } from "./dom.js";

type Character = components["schemas"]["CharacterView"];

export async function showCatalog(app: App, view: HTMLElement): Promise<() => void> {
    app.setTitle("Characters", false);
    const search = h("input", { type: "search", name: "q", placeholder: "Search characters", "aria-label": "Search characters" });
    const rating = select("rating", "Rating", [["", "Any rating"], ["sfw", "Safe for work"], ["nsfw", "18+"]]);
    const access = select("access_type", "Access", [["", "Free and premium"], ["free", "Free"], ["premium", "Premium"]]);
    const sort = select("sort", "Sort", [["popular", "Popular"], ["new", "New"], ["recommended", "Recommended"]]);
    const tag = select("tags", "Tag", [["", "Any tag"]]);
    const list = h("ul", { class: "cards", "aria-label": "Characters", "aria-busy": "true" });
    const status = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
    // A group chat: the ticked characters, in the order ticked (the order they answer a round in).
    const picked: Character[] = [];
    const startGroup = h("button", { type: "button", class: "primary", id: "start-group", disabled: true }, "Start a group chat");
    const groups = h("ul", { class: "groups", "aria-label": "Group chats" });
    const bar = h("div", { class: "group-bar" }, h("span", { class: "hint" }, "Tick two or three characters for a group chat."), startGroup);
    view.replaceChildren(
        h("form", { class: "filters", role: "search", onsubmit: (event: Event) => event.preventDefault() }, h("div", { class: "search" }, search), rating, access, tag, sort),
        groups,
        bar,
        status,
        list,
    );
    const pick = (character: Character, on: boolean) => {
        const at = picked.findIndex((entry) => entry.id === character.id);
        if (on && at < 0) picked.push(character);
        if (!on && at >= 0) picked.splice(at, 1);
        startGroup.disabled = picked.length < 2 || picked.length > 3;
        startGroup.textContent = picked.length >= 2 ? `Start a group chat with ${picked.map((entry) => entry.name).join(", ")}` : "Start a group chat";
    };
    startGroup.addEventListener("click", async () => {
        startGroup.disabled = true;
        try {
            const title = picked.map((entry) => entry.name).join(", ");
            const session = unwrap(await app.client.api.POST("/v1/sessions", { body: { title, agents: picked.map((entry) => entry.id) } }));
            location.hash = `#/g/${session.id}`;
        } catch (error) {
            app.notify(error);
            startGroup.disabled = false;
        }
    });
    void listGroups(app, groups);

    const tags = await app.client.api.GET("/v1/tags");
    for (const entry of tags.data?.data ?? []) tag.querySelector("select")!.append(h("option", { value: entry.name }, `${entry.name} (${entry.usage_count})`));

    let generation = 0;
    const load = async () => {
        const mine = ++generation;
        list.setAttribute("aria-busy", "true");
        const q = search.value.trim();
        const value = (label: HTMLElement) => label.querySelector("select")!.value;
        try {
            const page = q
                ? unwrap(await app.client.api.GET("/v1/characters/search", { params: { query: { q } } }))
                : unwrap(
                      await app.client.api.GET("/v1/characters", {
                          params: {
                              query: {
                                  sort: value(sort) as "popular" | "new" | "recommended",
                                  limit: 50,
                                  ...(value(rating) ? { rating: value(rating) as "sfw" | "nsfw" } : {}),
                                  ...(value(access) ? { access_type: value(access) as "free" | "premium" } : {}),
                                  ...(value(tag) ? { tags: value(tag) } : {}),
                              },
                          },
                      }),
                  );
            if (mine !== generation) return;
            const shown = q ? page.data.filter((character) => matches(character, value(rating), value(access), value(tag))) : page.data;
            list.replaceChildren(...shown.map((character) => card(character, picked.some((entry) => entry.id === character.id), pick)));
            if (shown.length === 0) list.append(h("li", { class: "empty" }, "No character matches."));
            status.textContent = `${shown.length} ${shown.length === 1 ? "character" : "characters"}`;
        } catch (error) {
            app.notify(error);
        } finally {
            if (mine === generation) list.setAttribute("aria-busy", "false");
        }
    };
    let debounce: ReturnType<typeof setTimeout> | undefined;
    search.addEventListener("input", () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => void load(), 200);
    });
    for (const control of [rating, access, tag, sort]) control.addEventListener("change", () => void load());
    await load();
    search.focus();
    return () => clearTimeout(debounce);
}

function matches(character: Character, rating: string, access: string, tag: string): boolean {
    return (!rating || character.content_rating === rating) && (!access || character.access_type === access) && (!tag || character.tags.some((t) => t.name === tag));
}

function select(name: string, label: string, options: [string, string][]): HTMLLabelElement {
    // The select's own name: a wrapping label would add the chosen option's text to it.
    return h("label", {}, label, h("select", { name, "aria-label": label }, ...options.map(([value, text]) => h("option", { value }, text))));
}

/** The user's group chats (sessions with several agents), newest first, as links. */
async function listGroups(app: App, into: HTMLElement): Promise<void> {
    try {
        const page = unwrap(await app.client.api.GET("/v1/sessions", { params: { query: { limit: 50 } } }));
        const shown = page.data.filter((session) => session.agents.length > 1);
        into.replaceChildren(...shown.map((session) => h("li", {}, h("a", { href: `#/g/${session.id}` }, session.title || "Group chat"))));
    } catch (error) {
        app.notify(error);
    }
}

function card(character: Character, ticked: boolean, pick: (character: Character, on: boolean) => void): HTMLLIElement {
    const gates = [character.access_type === "premium" && h("span", { class: "tag gate" }, "Premium"), character.content_rating === "nsfw" && h("span", { class: "tag gate" }, "18+")];
    const box = h("input", { type: "checkbox", "aria-label": `Add ${character.name} to a group chat`, "data-pick": character.id });
    box.checked = ticked;
    box.addEventListener("change", () => pick(character, box.checked));
    return h(
        "li",
        { class: "card" },
        h("label", { class: "pick" }, box),
        h(
            "button",
            { type: "button", "data-character": character.id, onclick: () => (location.hash = `#/c/${character.id}`) },
            h("span", { class: "name" }, character.name),
            h("span", { class: "desc" }, character.description),
            h("span", { class: "tags" }, ...gates, ...character.tags.map((tag) => h("span", { class: "tag" }, tag.name))),
        ),
    );
}
