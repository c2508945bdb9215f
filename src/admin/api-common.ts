/**
 * What the admin API's route files share: the context they run in, the
 * error shape and its HTTP statuses, and helpers for describing bodies.
 */
import { z } from "@hono/zod-openapi";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AdminIdentity } from "./admin-auth.ts";
import { AccountError, type AccountErrorCode } from "../accounts/account-store.ts";
import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import type { QueueManager } from "../queue/queue-manager.ts";
import type { AccountStore } from "../accounts/account-store.ts";
import type { PasswordPolicy } from "../accounts/password-policy.ts";
import type { TraceStore } from "../events/trace-store.ts";
import type { EventBus } from "../events/event-bus.ts";
import type { ServerStatus } from "./server-status.ts";
import type { Metrics } from "./metrics.ts";
import type { ActivitySeries } from "./activity-series.ts";
import type { HtmlViews } from "./html-views.ts";

export interface AdminApiOptions {
  readonly queue: QueueManager;
  readonly accounts: AccountStore;
  /** The password policy in force (`passwords:`; a reload may change it). */
  readonly passwords: () => PasswordPolicy;
  /** `<dataDir>/mail`. */
  readonly maildirRoot: string;
  readonly trace: TraceStore;
  readonly bus: EventBus;
  readonly series: ActivitySeries;
  readonly status: () => Promise<ServerStatus>;
  /** The links that show one message's HTML in the dashboard's sandboxed frame. */
  readonly views: HtmlViews;
  /** "token": every route but login and the description needs a bearer token; "none": none does (loopback only). */
  readonly auth: "token" | "none";
  /** The API token (from admin.tokenFile). */
  readonly token: string;
  readonly sessionLifetime: number;
  /** /metrics on this listener, and whether it needs the token. */
  readonly metrics?: { readonly registry: Metrics; readonly auth: "token" | "none" };
  readonly clock: Clock;
  readonly log: Logger;
}

export interface ApiEnv {
  Variables: { who: AdminIdentity };
}

/** A refusal with its HTTP status, thrown by a handler and answered as `{ error }`. */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  constructor(status: ContentfulStatusCode, message: string) {
    super(message);
    this.status = status;
  }
}

export const errorSchema = z.object({ error: z.string().openapi({ description: "What went wrong, in words" }) }).openapi("Error");

export function jsonBody<T extends z.ZodType>(schema: T) {
  return { content: { "application/json": { schema } }, required: true };
}

export function ok<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}

/** The error responses a route may give, documented. */
export function errors(...statuses: (400 | 404 | 409 | 413 | 422 | 503)[]) {
  const words: Record<number, string> = {
    400: "Invalid request", 404: "Not found", 409: "Conflicts with what exists", 413: "Too large to parse", 422: "Refused by a rule (password policy, alias loop, unknown domain)", 503: "Busy, try again",
  };
  return Object.fromEntries(statuses.map((s) => [s, { description: words[s], content: { "application/json": { schema: errorSchema } } }]));
}

const ACCOUNT_STATUS: Record<AccountErrorCode, ContentfulStatusCode> = {
  "invalid-address": 400, "invalid-domain": 400, "invalid-password": 422, "invalid-quota": 400,
  "unknown-domain": 422, exists: 409, "not-found": 404, "config-defined": 409, "domain-in-use": 409, "alias-loop": 422, locked: 503, corrupt: 500,
};

/** Run an account operation; its AccountError becomes the API's error with the matching status. */
export async function accountCall<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof AccountError) throw new ApiError(ACCOUNT_STATUS[err.code], err.message);
    throw err;
  }
}

/** Paging parameters: offset and limit (1…500). */
export const paging = {
  offset: z.coerce.number().int().min(0).default(0).openapi({ description: "How many to skip" }),
  limit: z.coerce.number().int().min(1).max(500).default(50).openapi({ description: "How many to return (at most 500)" }),
};
