/**
 * The SASL mechanisms Petrel's SMTP server offers, in order of preference, and the one place
 * that starts an exchange by name. Each mechanism is a pure state machine in its own file; this
 * registry is the only module that knows them all.
 */
import type { SaslCredentials, SaslExchange } from "./exchange.ts";
import { PlainExchange } from "./plain.ts";
import { LoginExchange } from "./login.ts";
import { ScramSha256Exchange } from "./scram-sha-256.ts";

export type SaslMechanismName = "PLAIN" | "LOGIN" | "SCRAM-SHA-256";

export const SASL_MECHANISMS: readonly SaslMechanismName[] = ["SCRAM-SHA-256", "PLAIN", "LOGIN"];

export interface SaslExchangeOptions {
  /** The server nonce for SCRAM (printable ASCII, no ","); random when absent. For tests. */
  nonce?: () => string;
}

export function isSaslMechanismName(name: string): name is SaslMechanismName {
  return (SASL_MECHANISMS as readonly string[]).includes(name);
}

export function startExchange(mechanism: SaslMechanismName, credentials: SaslCredentials, options?: SaslExchangeOptions): SaslExchange {
  switch (mechanism) {
    case "PLAIN":
      return new PlainExchange(credentials);
    case "LOGIN":
      return new LoginExchange(credentials);
    case "SCRAM-SHA-256":
      return new ScramSha256Exchange(credentials, options);
    default:
      throw new Error(`unsupported SASL mechanism: ${String(mechanism)}`);
  }
}
