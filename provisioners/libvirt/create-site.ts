/** Creating the lab on one hypervisor: its pool, image upload, network and domains. */
import { mkdir, rm, symlink } from "node:fs/promises";
import { LabError } from "../../topology/errors.ts";
import { step } from "../../topology/progress.ts";
import {
  parseLabMarker,
  renderBridgeNetworkXml,
  renderDomainXml,
  renderNetworkXml,
  renderPoolXml,
  type DomainSpec,
} from "../../templates/libvirt-domain.ts";
import { ensureHostKey } from "../keys.ts";
import type { Machine, ProvisionContext } from "../provisioner.ts";
import { chooseDomainType } from "./accel.ts";
import { TCG_TB_CACHE_MIB } from "../qemu/accel.ts";
import { bridgeName, domainName, networkName, poolName, poolPath, volumes } from "./names.ts";
import { labBridge } from "./placement.ts";
import type { LibvirtDeps } from "./index.ts";
import type { OpenSite } from "./open-site.ts";
import { vmMachine } from "../vm-node.ts";
import { labDomains, readSiteRecords, writeSiteRecord, type SiteRecord } from "./site-state.ts";

/** The lab's pool, image, network and domains on one hypervisor. */
export async function createOnSite(
  deps: LibvirtDeps,
  ctx: ProvisionContext,
  site: OpenSite,
  privateKeyPath: string,
): Promise<{ machine: Machine; consoleLog: string }[]> {
  const { plan, state, reporter } = ctx;
  const { conn, jump, tag } = site;
  const type = deps.domainType ?? chooseDomainType(site.facts);
  const on = tag ? ` on ${site.uri}` : "";
  if (type === "qemu")
    reporter.notice(`KVM is not usable${on || " here"}: libvirt domains use TCG (software, slower)`);

  const lab = plan.lab;
  const pool = poolName(lab, tag);
  const existing = await labDomains(conn, lab, tag);
  const all = await conn.listDomains();
  for (const node of site.nodes) {
    const other = all.find((d) => d.name === domainName(lab, node.name));
    if (other && !existing.has(node.name)) {
      const marker = parseLabMarker(other.xml);
      throw new LabError({
        code: "LIBVIRT_NAME_TAKEN",
        what:
          marker?.lab === lab
            ? `the libvirt domain ${other.name} at ${site.uri} belongs to lab ${lab}'s node ${node.name} on another hypervisor`
            : `a libvirt domain named ${other.name} exists at ${site.uri} but does not belong to lab ${lab}`,
        where: `node ${node.name}`,
        fix:
          marker?.lab === lab
            ? `run \`lab down ${lab}\` before moving nodes between hypervisors`
            : `rename the lab, or remove that domain (virsh undefine ${other.name}) if it is not needed`,
      });
    }
  }

  await step(
    reporter,
    "libvirt.pool",
    () => conn.ensurePool(pool, renderPoolXml({ name: pool, path: poolPath(lab, tag) })),
    { message: `${pool}${on}` },
  );
  const image = await deps.image(ctx);
  const paths = await step(
    reporter,
    "libvirt.image",
    async () => {
      const have = await conn.listVolumes(pool);
      const saved = (await readSiteRecords(state)).find((r) => r.uri === site.uri);
      const record = (r: Omit<SiteRecord, "uri" | "tag">) =>
        writeSiteRecord(state, { uri: site.uri, tag, ...r });
      const recorded = saved?.uploadedImage;
      const wanted = image.kernel ? [volumes.base, volumes.kernel, volumes.initrd] : [volumes.base];
      const complete = wanted.every((v) => have.includes(v));
      const running = [...existing.values()].some((d) => d.state === "running");
      const changed = recorded !== undefined && recorded !== image.key;
      if (complete && running && changed) {
        // Overwriting a base under running overlays would corrupt them.
        reporter.notice(
          `the image changed, but lab ${lab} is running${on}: its nodes keep the old image until \`lab down\``,
        );
      } else if (!complete || changed || saved?.uploading) {
        if (running) {
          throw new LabError({
            code: "LIBVIRT_POOL_INCOMPLETE",
            what: `the image volumes of pool ${pool}${on} are missing or incomplete while nodes of lab ${lab} run`,
            fix: `run \`lab down ${lab}\`, then \`lab up\` again`,
            source: "host",
          });
        }
        // Overlays on an old base are not valid on the new one; their domains are stopped.
        for (const node of site.nodes) {
          if (changed && have.includes(volumes.disk(node.name)))
            await conn.deleteVolume(pool, volumes.disk(node.name));
        }
        await record({ uploading: image.key });
        await conn.uploadVolume(pool, volumes.base, image.disk);
        if (image.kernel) {
          await conn.uploadVolume(pool, volumes.kernel, image.kernel.path);
          await conn.uploadVolume(pool, volumes.initrd, image.kernel.initrd);
        }
      }
      if (!running || !changed) await record({ uploadedImage: image.key });
      return {
        base: await conn.volumePath(pool, volumes.base),
        kernel: image.kernel && {
          path: await conn.volumePath(pool, volumes.kernel),
          initrd: await conn.volumePath(pool, volumes.initrd),
          cmdline: image.kernel.cmdline,
        },
      };
    },
    { message: `${pool}${on}` },
  );
  const network = networkName(lab, tag);
  const bridge = labBridge(plan);
  await step(
    reporter,
    "libvirt.network",
    () =>
      conn.ensureNetwork(
        network,
        bridge
          ? renderBridgeNetworkXml({ name: network, bridge })
          : renderNetworkXml({
              name: network,
              bridge: bridgeName(plan.id),
              gateway: plan.network.gateway,
              prefix: plan.network.prefix,
            }),
      ),
    { message: bridge ? `${network} onto ${bridge}${on}` : network },
  );

  const out: { machine: Machine; consoleLog: string }[] = [];
  for (const node of site.nodes) {
    const hostKey = await ensureHostKey(state, node.name);
    const dom = existing.get(node.name);
    const consoleLog = `${poolPath(lab, tag)}/${volumes.console(node.name)}`;
    if (dom?.state === "running") {
      reporter.event({ step: "vm.start", node: node.name, state: "skipped", message: "already running" });
    } else {
      await step(
        reporter,
        "vm.start",
        async () => {
          const name = domainName(lab, node.name);
          // A stopped domain is redefined from the current plan; libvirt refuses a
          // redefinition without the old UUID, so it goes first.
          if (dom) await conn.removeDomain(name);
          const seedFile = await deps.seed(ctx, node);
          const seed = await conn.uploadVolume(pool, volumes.seed(node.name), seedFile);
          const have = await conn.listVolumes(pool);
          const disk = have.includes(volumes.disk(node.name))
            ? await conn.volumePath(pool, volumes.disk(node.name))
            : await conn.createVolume(pool, {
                name: volumes.disk(node.name),
                capacityMiB: node.diskMiB,
                format: "qcow2",
                backing: { path: paths.base, format: image.format },
              });
          const spec: DomainSpec = {
            name,
            lab,
            node: node.name,
            role: node.role,
            ...(tag ? { site: tag.slice(1) } : {}),
            type,
            cpus: node.cpus,
            memoryMiB: node.memoryMiB,
            mac: node.mac,
            network,
            disk,
            seed,
            kernel: paths.kernel,
            consoleLog,
            tbCacheMiB: TCG_TB_CACHE_MIB,
          };
          // `lab logs NODE --console` reads the console where the qemu provider keeps it (on a
          // remote hypervisor the file is there; `lab export logs` downloads it).
          await mkdir(state.path("vms", node.name), { recursive: true, mode: 0o700 });
          await rm(state.path("vms", node.name, "console.log"), { force: true });
          if (!jump) await symlink(spec.consoleLog, state.path("vms", node.name, "console.log"));
          await conn.defineDomain(renderDomainXml(spec));
          await conn.startDomain(name);
        },
        {
          node: node.name,
          message: `defining ${domainName(lab, node.name)}${on} (${type}, ${node.cpus} vCPU, ${node.memoryMiB} MiB)`,
        },
      );
    }
    out.push({
      consoleLog,
      machine: vmMachine(node, privateKeyPath, hostKey.publicKey, jump),
    });
  }
  return out;
}
