import type { SaslCredentials } from "../../src/sasl/exchange.ts";
import { deriveScramVerifier } from "../../src/sasl/scram.ts";

export interface TestUser {
  name: string;
  password: string;
  salt?: Buffer;
  iterations?: number;
}

/** In-memory credentials: canonical names are lower case; lookups are case-insensitive. */
export function testCredentials(users: TestUser[]): SaslCredentials & { plainCalls: string[] } {
  const byName = new Map(users.map((u) => [u.name.toLowerCase(), u]));
  const verifiers = new Map(
    users.map((u) => [u.name.toLowerCase(), deriveScramVerifier(u.password, u.salt ?? Buffer.from("0123456789abcdef"), u.iterations ?? 4096)]),
  );
  const plainCalls: string[] = [];
  return {
    plainCalls,
    async verifyPlain(authcid, password) {
      plainCalls.push(authcid);
      const u = byName.get(authcid.toLowerCase());
      return u && u.password === password ? u.name.toLowerCase() : null;
    },
    async scramVerifier(authcid) {
      const v = verifiers.get(authcid.toLowerCase());
      return v ? { user: authcid.toLowerCase(), ...v } : null;
    },
  };
}
