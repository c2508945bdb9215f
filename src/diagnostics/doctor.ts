/**
 * `petrel doctor`: the running configuration and the world around it, in
 * one list of findings — the server and its listeners, certificates, the
 * data directory, each local domain's public DNS, reverse DNS of the
 * sending address, and outbound port 25. Each check is its own file; this
 * one runs them in the order a person fixes things.
 */
import type { ServerStatus } from "../admin/server-status.ts";
import type { Config } from "../config/schema.ts";
import { publicDns, type DoctorResolver } from "./domain-dns.ts";
import type { DkimKeyStore } from "../mailauth/dkim-key-store.ts";
import type { Finding } from "./finding.ts";
import { certificateSetup, dataDirSetup } from "./local-setup.ts";
import { outboundPort } from "./outbound-port.ts";
import { runningServer } from "./running-server.ts";

export interface DoctorInputs {
  readonly config: Config;
  /** What the running server said over its control socket; null when nothing answered. */
  readonly status: ServerStatus | null;
  readonly controlSocket: string;
  /** The local domains: the config's and those added with petrel domain add. */
  readonly domains: readonly string[];
  readonly resolver: DoctorResolver;
  /** storage.kind postgres: the cluster's DKIM keys, checked instead of the data directory's files. */
  readonly dkimKeys?: DkimKeyStore;
  /** Where to test outbound port 25 (--probe); default a well-known MX. */
  readonly probe?: { readonly host: string; readonly port: number };
  /** For each network probe. */
  readonly timeoutMs: number;
  readonly now: number;
}

export async function runDoctor(d: DoctorInputs): Promise<Finding[]> {
  const { config } = d;
  const heloName = config.outbound.heloName ?? config.hostname;
  const findings: Finding[] = [];
  findings.push(...await runningServer(config, d.status, { timeoutMs: d.timeoutMs, heloName, controlSocket: d.controlSocket }));
  findings.push(...await certificateSetup(config, d.now));
  findings.push(...await dataDirSetup(config));
  findings.push(...await publicDns(config, d.domains, d.resolver, d.dkimKeys));
  findings.push(...await outboundPort(config, { resolver: d.resolver, probe: d.probe, heloName, timeoutMs: d.timeoutMs }));
  return findings;
}
