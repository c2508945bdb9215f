/**
 * Wait (bounded, polling every 10 ms) until `what` gives a truthy value, and
 * return it; after `ms` throw naming `label` and whatever `context()` adds
 * (a peer's log, say). For observing what other processes and sockets do,
 * never for waiting out a retry (tests inject time for that).
 */
export async function until<T>(
  what: () => T | undefined | false | Promise<T | undefined | false>,
  label: string,
  options: { ms?: number; context?: () => Promise<string> } = {},
): Promise<T> {
  const end = Date.now() + (options.ms ?? 10_000);
  for (;;) {
    const v = await what();
    if (v) return v;
    if (Date.now() >= end) throw new Error(`timed out waiting for ${label}${options.context ? `\n${await options.context()}` : ""}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
