// Server-Sent Events from a fetch body, as the HTML standard parses them: lines end in CRLF, LF or
// CR; `field: value` with one leading space dropped; a blank line dispatches; `:` starts a comment.

export interface SseEvent {
    readonly id: string | null;
    readonly event: string;
    readonly data: string;
}

export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let id: string | null = null;
    let event = "";
    let data: string[] = [];
    try {
        for (;;) {
            const { value, done } = await reader.read();
            if (!done) buffer += decoder.decode(value, { stream: true });
            for (;;) {
                const end = buffer.search(/\r\n|\n|\r/);
                // A lone CR at the end may be the first half of a CRLF: wait for more, unless the body ended.
                if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1 && !done)) break;
                const line = buffer.slice(0, end);
                buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
                if (line === "") {
                    if (data.length > 0) yield { id, event: event || "message", data: data.join("\n") };
                    event = "";
                    data = [];
                    continue;
                }
                if (line.startsWith(":")) continue;
                const colon = line.indexOf(":");
                const field = colon < 0 ? line : line.slice(0, colon);
                let text = colon < 0 ? "" : line.slice(colon + 1);
                if (text.startsWith(" ")) text = text.slice(1);
                if (field === "data") data.push(text);
                else if (field === "event") event = text;
                else if (field === "id" && !text.includes("\0")) id = text;
            }
            // An event the body ended inside is not delivered (as the standard says).
            if (done) return;
        }
    } finally {
        // Stops the body when the consumer leaves early (a `break` out of the loop).
        await reader.cancel().catch(() => undefined);
    }
}
