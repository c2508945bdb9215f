/**
 * Run a few fuzzing properties as node:test cases (the quick sample in
 * `npm test`; `npm run fuzz` runs the same properties for much longer).
 * FUZZ_SEED fixes the seed to replay a failure.
 */
import { test } from "node:test";
import fc from "fast-check";
import { PROPERTIES } from "./properties.ts";

export function sample(names: readonly string[]): void {
  for (const name of names) {
    const p = PROPERTIES.find((q) => q.name === name);
    if (!p) throw new Error(`no fuzz property ${name}`);
    test(`${p.name}: ${p.description}`, async () => {
      const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
      await fc.assert(p.property(), { numRuns: p.sampleRuns, seed });
    });
  }
}
