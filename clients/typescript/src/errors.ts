import type { components } from "./schema.js";

export type ErrorBody = components["schemas"]["ErrorBody"];

/** A refusal from the API: its status and JSON body (`error` is the code, e.g. `daily_limit_exceeded`). */
export class ApiError extends Error {
    readonly status: number;
    readonly body: ErrorBody;

    constructor(status: number, body: ErrorBody) {
        super(body.message);
        this.name = "ApiError";
        this.status = status;
        this.body = body;
    }

    get code(): string {
        return this.body.error;
    }

    /** Seconds to wait before retrying, when the server said (`429`, `503`). */
    get retryAfter(): number | null {
        return this.body.retry_after ?? null;
    }

    /** The error a non-2xx response carries; a body that is not the API's JSON becomes `internal`. */
    static async from(response: Response): Promise<ApiError> {
        const text = await response.text();
        try {
            const body = JSON.parse(text) as ErrorBody;
            if (typeof body.error === "string" && typeof body.message === "string") return new ApiError(response.status, body);
        } catch {
            // not JSON: described below
        }
        const message = `HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
        return new ApiError(response.status, { error: "internal", message, request_id: response.headers.get("x-request-id") });
    }
}

/** The data of an openapi-fetch result, or its error thrown as an `ApiError`. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
    if (result.error !== undefined || !result.response.ok) {
        const body = result.error as ErrorBody | undefined;
        throw new ApiError(result.response.status, body?.error ? body : { error: "internal", message: `HTTP ${result.response.status}`, request_id: null });
    }
    return result.data as T;
}
