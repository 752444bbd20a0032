/** What the VM providers (qemu, libvirt) make of a planned node the same way: its NoCloud seed and its Machine. */
import { writeSeedIso } from "../cloud-init/iso.ts";
import { renderSeed } from "../cloud-init/seed.ts";
import type { Plan, PlannedNode } from "../topology/plan.ts";
import type { SshJump } from "../ssh/endpoint.ts";
import { nodeMachine, type Machine } from "./provisioner.ts";

/** Writes the node's seed image (label cidata): its hostname, login user and key, host key and static address. */
export async function writeNodeSeed(
  file: string,
  plan: Plan,
  node: PlannedNode,
  authorizedKey: string,
  hostKey: { publicKey: string; privateKey: string },
): Promise<void> {
  await writeSeedIso(
    file,
    renderSeed({
      lab: plan.lab,
      hostname: node.name,
      user: node.ssh.user,
      authorizedKey,
      hostKey,
      mac: node.mac,
      address: node.address,
      prefix: plan.network.prefix,
      gateway: plan.network.gateway || undefined,
    }),
  );
}

/** The node as a Machine reached on port 22 of its address with the lab's key and its pinned host key. */
export function vmMachine(
  node: PlannedNode,
  privateKeyPath: string,
  hostPublicKey: string,
  jump?: SshJump,
): Machine {
  return nodeMachine(node, {
    port: 22,
    user: node.ssh.user,
    privateKeyPath,
    hostKey: hostPublicKey,
    ...(jump ? { jump } : {}),
  });
}
