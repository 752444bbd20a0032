/** The service proxy: renders the nftables ruleset from Services and Endpoints and applies it when it differs. */
import type { V1Endpoints, V1Service } from "@kubernetes/client-node";
import { execFile, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { renderRuleset, serviceRules, type LocalDns } from "./ruleset.ts";

/** Applies a ruleset with `nft -f -`; `prefix` runs it elsewhere (e.g. nsenter into a test netns). */
export function applyRuleset(text: string, prefix: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = [...prefix, "nft", "-f", "-"];
    const p = spawn(cmd!, args, { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    p.on("error", reject);
    p.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`nft -f failed (${code}): ${err.trim()}`)),
    );
    p.stdin.end(text);
  });
}

/**
 * A pod reaching a ClusterIP whose endpoint sits on the same node's bridge gets its answer straight
 * over the bridge, bypassing the un-DNAT, unless bridged IPv4 goes through the ip hooks: load
 * br_netfilter and turn on bridge-nf-call-iptables (nftables' ip tables see it too). Best effort:
 * a host without the module still serves every other path.
 */
async function bridgedTrafficThroughNetfilter(): Promise<void> {
  await new Promise<void>((resolve) => execFile("modprobe", ["br_netfilter"], () => resolve()));
  await writeFile("/proc/sys/net/bridge/bridge-nf-call-iptables", "1").catch(() => undefined);
}

/**
 * The nftables side of the proxy's one-key reconcile (node/network-loops.ts): callers run one
 * update at a time, so an older ruleset never lands after a newer one.
 */
export class ServiceProxy {
  private applied: string | undefined;
  private readonly ready: Promise<void> = Promise.resolve();

  constructor(
    private readonly prefix: string[] = [],
    private readonly localDns?: LocalDns,
  ) {
    // Only on a real node: tests with a prefix run in a netns of a host they must not reconfigure.
    if (!prefix.length) this.ready = bridgedTrafficThroughNetfilter();
  }

  /** Renders from the full current sets of Services and Endpoints; applies only if the text changed. */
  async update(services: V1Service[], endpoints: V1Endpoints[]): Promise<void> {
    await this.ready;
    const text = renderRuleset(serviceRules(services, endpoints), this.localDns);
    if (text === this.applied) return;
    await applyRuleset(text, this.prefix);
    this.applied = text;
  }
}
