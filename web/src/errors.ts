// What a person reads when the API says no: one sentence per error code the app can meet.

import { ApiError } from "@chat-backend/client";

import { time } from "./dom.js";

export function describe(error: unknown): string {
    if (!(error instanceof ApiError)) return "Something went wrong — check your connection and try again.";
    const body = error.body;
    switch (body.error) {
        case "daily_limit_exceeded": {
            const resets = body.limits?.resets_at;
            return `You have used all of today's messages.${resets ? ` More at ${time(resets)}.` : ""} A subscription lifts the limit.`;
        }
        case "premium_required":
            return "This character is for subscribers. Subscribe to chat with them.";
        case "adult_confirmation_required":
            return "This character is 18+. Confirm your age in Profile to chat with them.";
        case "llm_error":
            return "The AI could not answer just now. Your message is saved — try Regenerate in a moment.";
        case "llm_busy":
        case "llm_timeout":
            return "The AI is busy. Try again in a few seconds.";
        case "rate_limit":
            return `Slow down a little — try again in ${body.retry_after ?? 60} s.`;
        case "session_closed":
            return "This chat is closed to new messages.";
        case "context_too_long":
            return "This conversation is too long for the AI. Start a new scene to go on.";
        case "unauthorized":
            return "Your sign-in has expired. Sign in again.";
        case "character_not_found":
            return "This character is no longer available.";
        default:
            return body.message;
    }
}
