// The character catalog: search, filters (rating, access, tag, sort), one card per character.

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
    view.replaceChildren(h("form", { class: "filters", role: "search", onsubmit: (event: Event) => event.preventDefault() }, h("div", { class: "search" }, search), rating, access, tag, sort), status, list);

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
            list.replaceChildren(...shown.map(card));
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

function card(character: Character): HTMLLIElement {
    const gates = [character.access_type === "premium" && h("span", { class: "tag gate" }, "Premium"), character.content_rating === "nsfw" && h("span", { class: "tag gate" }, "18+")];
    return h(
        "li",
        { class: "card" },
        h(
            "button",
            { type: "button", "data-character": character.id, onclick: () => (location.hash = `#/c/${character.id}`) },
            h("span", { class: "name" }, character.name),
            h("span", { class: "desc" }, character.description),
            h("span", { class: "tags" }, ...gates, ...character.tags.map((tag) => h("span", { class: "tag" }, tag.name))),
        ),
    );
}
