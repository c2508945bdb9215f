/**
 * The V8 flags Petrel's launchers start Node with: the `#!` line of
 * cli/main.ts (the installed `petrel`), bin/petrel, and the benchmark's
 * servers; test/system/node-flags.test.ts keeps them the same.
 *
 * --max-semi-space-size=8 (MiB): V8 sizes the young generation by the
 * machine's memory — 64 MiB semi-spaces, a 128 MiB new space, on a machine
 * with 24 GiB — and keeps it once a burst (a million-message `retry --all`,
 * a busy minute) has grown it: about 100 MiB of a server's RSS that holds
 * nothing. Mail's short-lived objects (a command line, a reply, a chunk's
 * bookkeeping) die young in 16 MiB too; the scavenges are more frequent and
 * each as short. It cannot be set once the process runs
 * (v8.setFlagsFromString does not resize the heap), so it is a start flag.
 */
export const NODE_FLAGS: readonly string[] = ["--max-semi-space-size=8"];
