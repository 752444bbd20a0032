/** The provisioner registry: provider type → Provisioner. */
import { LabError } from "../topology/errors.ts";
import type { Provider } from "../topology/schema.ts";
import type { Provisioner } from "./provisioner.ts";
import { BaremetalProvisioner } from "./baremetal/index.ts";
import { LibvirtProvisioner } from "./libvirt/index.ts";
import { guestDeps } from "./libvirt/guest.ts";
import { nspawnProvisioner } from "./nspawn/index.ts";
import { qemuProvisioner } from "./qemu/index.ts";

const PROVISIONERS: Partial<Record<Provider["type"], Provisioner>> = {
  qemu: qemuProvisioner,
  libvirt: new LibvirtProvisioner(guestDeps),
  baremetal: new BaremetalProvisioner(),
  nspawn: nspawnProvisioner,
};

export function provisionerFor(type: Provider["type"]): Provisioner {
  const p = PROVISIONERS[type];
  if (!p) {
    throw new LabError({
      code: "PROVIDER_UNAVAILABLE",
      what: `provider ${type} is not available in this build`,
      where: "spec.provider.type",
      fix: `use one of: ${Object.keys(PROVISIONERS).join(", ")}`,
    });
  }
  return p;
}

/**
 * Every provisioner whose resources can be found by the lab's name alone (for `lab down` when the
 * state no longer says which one made the lab). Not baremetal: its hosts are known only from state.
 */
export function allProvisioners(): Provisioner[] {
  return Object.values(PROVISIONERS).filter(
    (p): p is Provisioner => p !== undefined && p.name !== "baremetal",
  );
}
