import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { startReception, type Reception, type ReceptionOptions } from "../../src/mta.ts";
import { hashPassword, scramVerifier } from "../../src/accounts/password.ts";
import { FileAccountStore } from "../../src/accounts/file-account-store.ts";
import { SmtpClient } from "./fixtures/robust-helpers.ts";

/**
 * Start a whole Petrel receiving server in this process for a test: every
 * listener on 127.0.0.1 port 0, a fresh data directory, a silent logger.
 * `overrides` is merged into the raw config before validation, exactly as a
 * YAML file would be.
 */

export interface TestPetrel {
  readonly server: Reception;
  readonly config: Config;
  readonly dataDir: string;
  readonly mx: number;
  readonly submission: number;
  readonly submissions: number;
  stop(): Promise<void>;
}

export const ALICE = { address: "alice@example.test", password: "correct horse battery staple" };
let aliceEntry: Promise<{ address: string; password: string; scram: string }> | null = null;

/** Alice's config entry (hashing costs ~50 ms, so it is made once per test file). */
export function aliceUser(): Promise<{ address: string; password: string; scram: string }> {
  aliceEntry ??= hashPassword(ALICE.password).then((password) => ({
    address: ALICE.address, password, scram: scramVerifier(ALICE.password, 4096),
  }));
  return aliceEntry;
}

export async function startPetrel(
  overrides: Record<string, unknown> = {},
  options: Partial<ReceptionOptions> = {},
): Promise<TestPetrel> {
  const dataDir = await mkdtemp(join(tmpdir(), "petrel-e2e-"));
  const raw = {
    hostname: "mx.example.test",
    dataDir,
    domains: ["example.test", "localhost"],
    listeners: [
      { address: "127.0.0.1", port: 0, role: "mx" },
      { address: "127.0.0.1", port: 0, role: "submission" },
      { address: "127.0.0.1", port: 0, role: "submissions" },
    ],
    users: [await aliceUser()],
    log: { level: "silent" },
    ...overrides,
  };
  const config = parseConfig(raw, "test");
  const log = pino({ level: config.log.level });
  // Every address at example.test exists (a catch-all to alice), so tests can
  // use any local recipient; unknown users are tested at other domains.
  const accounts = new FileAccountStore({ dataDir, configDomains: config.domains, configUsers: config.users });
  await accounts.addAlias("@example.test", ALICE.address);
  const server = await startReception(config, { log, errorSleep: 0, accounts, ...options });
  const port = (role: string) => server.listeners.find((l) => l.role === role)?.port ?? -1;
  return {
    server, config, dataDir,
    mx: port("mx"), submission: port("submission"), submissions: port("submissions"),
    async stop() {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** `fn` against a Petrel started with `overrides`; its clients closed and the server stopped afterwards, whatever happens. */
export async function withPetrel(overrides: Record<string, unknown>, fn: (p: TestPetrel) => Promise<void>): Promise<void> {
  const p = await startPetrel(overrides);
  try {
    await fn(p);
  } finally {
    SmtpClient.closeAll();
    await p.stop();
  }
}
