/** What the lab's state keeps per hypervisor, and the lab's domains on one. */
import { parseLabMarker } from "../../templates/libvirt-domain.ts";
import type { ProvisionContext } from "../provisioner.ts";
import { type DomainRecord, type LibvirtConnection } from "./connection.ts";

/** What the lab's state records per hypervisor, so `lab down` finds them and `up` skips a finished upload. */
export interface SiteRecord {
  uri: string;
  tag: string;
  uploadedImage?: string;
  /** Set while an upload runs: an interrupted upload leaves volumes that look complete. */
  uploading?: string;
}
interface LibvirtStateFile {
  sites?: SiteRecord[];
  /** The single-hypervisor format of earlier versions (read, never written). */
  uri?: string;
  uploadedImage?: string;
  uploading?: string;
}
export const STATE_FILE = "libvirt.json";

export async function readSiteRecords(state: ProvisionContext["state"]): Promise<SiteRecord[]> {
  const f = await state.readJson<LibvirtStateFile>(STATE_FILE).catch(() => undefined);
  if (!f) return [];
  if (f.sites) return f.sites;
  if (!f.uri) return [];
  const { uploadedImage, uploading } = f;
  return [
    { uri: f.uri, tag: "", ...(uploadedImage ? { uploadedImage } : {}), ...(uploading ? { uploading } : {}) },
  ];
}

/** Replaces the record of one hypervisor (by URI), keeping the others'. */
export async function writeSiteRecord(state: ProvisionContext["state"], rec: SiteRecord): Promise<void> {
  const all = await readSiteRecords(state);
  const i = all.findIndex((r) => r.uri === rec.uri);
  if (i >= 0) all[i] = rec;
  else all.push(rec);
  await state.writeJson(STATE_FILE, { sites: all } satisfies LibvirtStateFile);
}

/**
 * Domains of one lab on a connection, by node name, recognised by their metadata marker; with
 * `site`, only those placed on that hypervisor (two URIs may reach one libvirtd).
 */
export async function labDomains(
  conn: LibvirtConnection,
  lab: string,
  site?: string,
): Promise<Map<string, DomainRecord>> {
  const out = new Map<string, DomainRecord>();
  for (const d of await conn.listDomains()) {
    const m = parseLabMarker(d.xml);
    if (m?.lab !== lab) continue;
    if (site !== undefined && (m.site ?? "") !== site.replace(/^\./, "")) continue;
    out.set(m.node, d);
  }
  return out;
}
