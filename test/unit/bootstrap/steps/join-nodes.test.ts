import { describe, expect, it } from "vitest";
import {
  ensureContainerd,
  importNodeImages,
  type ImageArchive,
} from "../../../../bootstrap/steps/join-nodes.ts";
import type { SshSession } from "../../../../ssh/session.ts";
import {
  NODE_CONTAINERD,
  renderNodeCniConfig,
  renderNodeContainerdConfig,
} from "../../../../templates/lab-agent.ts";

/** Records commands and uploads; remote files are a map, so a second run sees what the first wrote. */
function fakeSession(
  files = new Map<string, string>(),
  imagesPresent = new Set<string>(),
  archiveImage = new Map<string, string>(),
) {
  const commands: string[] = [];
  const uploads: string[] = [];
  const s = {
    async run(cmd: string): Promise<string> {
      commands.push(cmd);
      if (/images ls -q$/.test(cmd)) return [...imagesPresent].map((n) => `${n}\n`).join("");
      for (const imp of cmd.matchAll(/images import '([^']+)'/g))
        imagesPresent.add(archiveImage.get(imp[1]!)!);
      return "";
    },
    async upload(src: { data?: string | Buffer; sha256?: string }, path: string): Promise<string> {
      uploads.push(path);
      const v = src.data !== undefined ? String(src.data) : src.sha256!;
      if (files.get(path) === v) return "unchanged";
      files.set(path, v);
      return "uploaded";
    },
    async uploadMany(
      items: { source: { data?: string | Buffer; sha256?: string }; remotePath: string }[],
    ): Promise<string[]> {
      const out: string[] = [];
      for (const it of items)
        if ((await s.upload(it.source, it.remotePath)) === "uploaded") out.push(it.remotePath);
      return out;
    },
  };
  return { s: s as unknown as SshSession, commands, uploads, files, imagesPresent };
}

describe("join-nodes: containerd and images on a node", () => {
  it("writes config and CNI for the pod CIDR, unmasks before starting, restarts only on change", async () => {
    const f = fakeSession();
    expect(await ensureContainerd(f.s, "10.244.3.0/24")).toBe(2);
    expect(f.files.get(NODE_CONTAINERD.config)).toBe(renderNodeContainerdConfig());
    expect(JSON.parse(f.files.get(NODE_CONTAINERD.cniConf)!).plugins[0].ipam.ranges[0][0].subnet).toBe(
      "10.244.3.0/24",
    );
    const start = f.commands.find((c) => c.includes("systemctl"))!;
    expect(start.indexOf("systemctl unmask")).toBeLessThan(start.indexOf("systemctl enable"));
    // One manager reload at most (only after an unmask): enable and unmask must not reload by themselves.
    expect(start.match(/daemon-reload/g)).toHaveLength(1);
    expect(start).toMatch(
      /case "\$st" in masked\*\) systemctl unmask --no-reload containerd\.service[^;]*; \[ "\$\(systemctl show -p NeedDaemonReload --value 'containerd\.service'[^|]*\|\| systemctl daemon-reload;;/,
    );
    expect(start).toContain("systemctl enable --no-reload containerd.service");
    expect(start).not.toMatch(/systemctl (enable|unmask) (?!--no-reload)/);
    expect(start).toContain("systemctl restart --no-block containerd.service");

    const again = fakeSession(f.files);
    expect(await ensureContainerd(again.s, "10.244.3.0/24")).toBe(0);
    const start2 = again.commands.find((c) => c.includes("systemctl"))!;
    expect(start2).not.toContain("restart");
    expect(start2).toContain(
      "systemctl is-active --quiet containerd.service || { systemctl start --no-block containerd.service",
    );
  });

  it("imports each archive once: skipped when unchanged and present, reimported when missing", async () => {
    const images: ImageArchive[] = [
      {
        name: "docker.io/lab/pause:1",
        local: "/x/pause.tar",
        remote: "/var/lib/lab/images/pause.tar",
        sha256: "p",
      },
      {
        name: "docker.io/lab/sample:latest",
        local: "/x/sample.tar",
        remote: "/var/lib/lab/images/sample.tar",
        sha256: "s",
      },
    ];
    const files = new Map<string, string>();
    const present = new Set<string>();
    const names = new Map(images.map((i) => [i.remote, i.name]));
    const f = fakeSession(files, present, names);
    expect(await importNodeImages(f.s, images)).toBe(2);
    expect(
      f.commands.some((c) => c.includes("--namespace k8s.io images import '/var/lib/lab/images/pause.tar'")),
    ).toBe(true);
    expect(present).toEqual(new Set(images.map((i) => i.name)));
    // Two images, two round trips besides the upload batch: one listing, one import.
    expect(f.commands).toHaveLength(2);
    const g = fakeSession(files, present, names);
    expect(await importNodeImages(g.s, images)).toBe(0);
    expect(g.commands.some((c) => c.includes("images import"))).toBe(false);
    present.delete(images[1]!.name); // someone removed an image: it comes back, alone
    const h = fakeSession(files, present, names);
    expect(await importNodeImages(h.s, images)).toBe(1);
    expect(h.commands.find((c) => c.includes("images import"))).not.toContain("pause");
  });

  it("renders a node config containerd accepts: cgroupfs driver, restricted oom_score_adj, Debian's CNI dir", () => {
    const c = renderNodeContainerdConfig();
    expect(c).toContain("SystemdCgroup = false");
    expect(c).toContain("restrict_oom_score_adj = true");
    expect(c).toContain('bin_dir = "/usr/lib/cni"');
    expect(c).toContain('conf_dir = "/etc/cni/net.d"');
    expect(c).toContain('sandbox_image = "docker.io/lab/pause:1"');
    expect(renderNodeCniConfig("10.244.1.0/24")).toContain('"gateway": "10.244.1.1"');
  });
});
