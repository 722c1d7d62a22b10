// The memories panel (list, delete one, delete all; live while a chat's socket reports changes) and
// the profile (name, language, 18+).

import { unwrap } from "@chat-backend/client";

import type { App } from "./app.js";
import { byId, h } from "./dom.js";

export function setUpPanels(app: App): void {
    const { client } = app;
    const memories = byId<HTMLDialogElement>("memories");
    const profile = byId<HTMLDialogElement>("profile");
    for (const dialog of [memories, profile]) {
        for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close());
    }

    const list = byId("memory-list");
    const loadMemories = async () => {
        try {
            // In a chat: its own memories too (the user's are always listed).
            const query = app.chatSession ? { limit: 100, session_id: app.chatSession, include_global: true } : { limit: 100 };
            const page = unwrap(await client.api.GET("/v1/memories", { params: { query } }));
            list.replaceChildren(
                ...page.data.map((memory) =>
                    h(
                        "li",
                        { "data-memory": memory.id },
                        h("span", {}, memory.content),
                        memory.origin === "extracted" ? h("small", { class: "origin", title: "Read by the model from a chat" }, "remembered") : null,
                        h("button", { type: "button", class: "danger", "aria-label": `Delete the memory “${memory.content.slice(0, 40)}”`, onclick: () => void deleteOne(memory.id) }, "Delete"),
                    ),
                ),
            );
            if (page.data.length === 0) list.append(h("li", { class: "empty" }, "Nothing remembered yet."));
        } catch (error) {
            app.notify(error);
        }
    };
    const deleteOne = async (id: string) => {
        try {
            unwrap(await client.api.DELETE("/v1/memories/{id}", { params: { path: { id } } }));
            await loadMemories();
        } catch (error) {
            app.notify(error);
        }
    };
    // A chat's socket says when a memory came or went: an open panel follows it.
    document.addEventListener("memories-changed", () => {
        if (memories.open) void loadMemories();
    });
    byId("open-memories").addEventListener("click", () => {
        memories.showModal();
        void loadMemories();
    });
    byId("memories-clear").addEventListener("click", async () => {
        if (!confirm("Delete every memory?")) return;
        try {
            unwrap(await client.api.DELETE("/v1/memories", {}));
            await loadMemories();
        } catch (error) {
            app.notify(error);
        }
    });

    const form = byId<HTMLFormElement>("profile-form");
    const name = form.elements.namedItem("display_name") as HTMLInputElement;
    const language = form.elements.namedItem("language") as HTMLSelectElement;
    const adult = byId("adult-state");
    const confirmAdult = byId<HTMLButtonElement>("confirm-adult");
    type Me = { display_name: string | null; language: string | null; is_adult_confirmed: boolean; telegram: { first_name?: string | null } | null };
    const show = (me: Me) => {
        name.value = me.display_name ?? me.telegram?.first_name ?? "";
        if (me.language && ![...language.options].some((option) => option.value === me.language)) language.append(h("option", { value: me.language }, me.language));
        language.value = me.language ?? "";
        showAdult(me);
    };
    // The confirmation leaves the fields as they are: they may hold edits not saved yet.
    const showAdult = (me: Me) => {
        adult.textContent = me.is_adult_confirmed ? "You confirmed you are 18 or older." : "18+ characters need your confirmation.";
        confirmAdult.hidden = me.is_adult_confirmed;
    };
    const controls = [name, language, confirmAdult, form.querySelector<HTMLButtonElement>('button[type="submit"]')!];
    byId("open-profile").addEventListener("click", async () => {
        // Read-only until the profile is read, so nothing typed meanwhile is overwritten.
        for (const control of controls) control.disabled = true;
        profile.showModal();
        try {
            show(unwrap(await client.api.GET("/v1/me")));
            for (const control of controls) control.disabled = false;
        } catch (error) {
            app.notify(error);
        }
    });
    form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
            const body = { display_name: name.value.trim() || null, language: language.value || null };
            show(unwrap(await client.api.PATCH("/v1/me", { body })));
            profile.close();
        } catch (error) {
            app.notify(error);
        }
    });
    confirmAdult.addEventListener("click", async () => {
        try {
            showAdult(unwrap(await client.api.POST("/v1/me/confirm-adult", { body: { confirmed: true } })));
        } catch (error) {
            app.notify(error);
        }
    });
    byId("sign-out").addEventListener("click", () => app.signOut());
}
