/**
 * Petrel's version, from its package.json — two folders up from this file
 * both in a clone (src/system/) and in an installed package (dist/system/).
 */
import { readFileSync } from "node:fs";

let cached: string | undefined;

export function petrelVersion(): string {
  if (cached === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
      cached = typeof pkg.version === "string" ? pkg.version : "unknown";
    } catch {
      cached = "unknown";
    }
  }
  return cached;
}
