/**
 * OCI image archives built by hand from Debian's busybox-static: the pause image and the sample
 * image `lab/sample` (an httpd that answers with its pod name). Archives are deterministic: the
 * same busybox gives byte-identical files (fixed mtimes, owners, sort order, gzip without name/time).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile, copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const PAUSE_IMAGE = "docker.io/lab/pause:1";
export const SAMPLE_IMAGE = "docker.io/lab/sample:latest";

/** The sample server: writes its pod name (the sandbox hostname) as the page, serves it on $PORT. */
const SAMPLE_SCRIPT = `#!/bin/sh
# lab/sample: answer every GET with the pod name.
mkdir -p /tmp/www
echo "\${HOSTNAME:-$(hostname)}" > /tmp/www/index.html
exec httpd -f -p "\${PORT:-8080}" -h /tmp/www
`;

export interface ImageSpec {
  /** Full reference, stored as io.containerd.image.name. */
  name: string;
  entrypoint: string[];
  cmd?: string[];
  exposedPorts?: number[];
}

export const PAUSE: ImageSpec = { name: PAUSE_IMAGE, entrypoint: ["/bin/sleep", "infinity"] };
export const SAMPLE: ImageSpec = {
  name: SAMPLE_IMAGE,
  entrypoint: ["/bin/sample-httpd"],
  exposedPorts: [8080],
};

const EPOCH = "@0";
const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

async function deterministicTar(dir: string, out: string, members: string[]): Promise<void> {
  await run("tar", [
    "--create",
    "--file",
    out,
    "--directory",
    dir,
    "--sort=name",
    `--mtime=${EPOCH}`,
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=posix",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    ...members,
  ]);
}

/** The single root filesystem layer shared by both images: busybox with every applet linked in /bin. */
async function buildRootfs(work: string, busybox: string): Promise<string> {
  const root = join(work, "rootfs");
  for (const d of ["bin", "etc", "tmp", "proc", "sys", "dev"])
    await mkdir(join(root, d), { recursive: true });
  await chmod(join(root, "tmp"), 0o1777);
  await copyFile(busybox, join(root, "bin/busybox"));
  await chmod(join(root, "bin/busybox"), 0o755);
  const { stdout } = await run(busybox, ["--list"]);
  for (const applet of stdout.split("\n").filter((a) => a && a !== "busybox")) {
    await symlink("busybox", join(root, "bin", applet));
  }
  await writeFile(join(root, "bin/sample-httpd"), SAMPLE_SCRIPT, { mode: 0o755 });
  await chmod(join(root, "bin/sample-httpd"), 0o755);
  await writeFile(
    join(root, "etc/passwd"),
    "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  );
  await writeFile(join(root, "etc/group"), "root:x:0:\nnobody:x:65534:\n");
  const layerTar = join(work, "layer.tar");
  await deterministicTar(root, layerTar, ["bin", "dev", "etc", "proc", "sys", "tmp"]);
  return layerTar;
}

async function writeBlob(layout: string, data: Buffer | string): Promise<{ digest: string; size: number }> {
  const buf = typeof data === "string" ? Buffer.from(data) : data;
  const hex = sha256(buf);
  await writeFile(join(layout, "blobs/sha256", hex), buf);
  return { digest: `sha256:${hex}`, size: buf.length };
}

/** Builds one OCI image-layout archive at `out` for `spec`. */
export async function buildImageArchive(
  spec: ImageSpec,
  out: string,
  busybox = "/bin/busybox",
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "lab-oci-"));
  try {
    const layerTar = await buildRootfs(work, busybox);
    const layout = join(work, "layout");
    await mkdir(join(layout, "blobs/sha256"), { recursive: true });
    const raw = await readFile(layerTar);
    const diffId = `sha256:${sha256(raw)}`;
    // gzip -n: no name, no timestamp, so the compressed blob is reproducible too
    await run("gzip", ["-n", "-9", "-f", layerTar]);
    const layer = await writeBlob(layout, await readFile(`${layerTar}.gz`));
    const config = {
      architecture: "amd64",
      os: "linux",
      created: "1970-01-01T00:00:00Z",
      config: {
        Env: ["PATH=/bin"],
        Entrypoint: spec.entrypoint,
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        ...(spec.exposedPorts
          ? { ExposedPorts: Object.fromEntries(spec.exposedPorts.map((p) => [`${p}/tcp`, {}])) }
          : {}),
        WorkingDir: "/",
      },
      rootfs: { type: "layers", diff_ids: [diffId] },
      history: [{ created: "1970-01-01T00:00:00Z", created_by: "lab images/oci (busybox-static)" }],
    };
    const cfg = await writeBlob(layout, JSON.stringify(config));
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cfg },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layer }],
    };
    const man = await writeBlob(layout, JSON.stringify(manifest));
    const index = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...man,
          platform: { architecture: "amd64", os: "linux" },
          annotations: {
            "io.containerd.image.name": spec.name,
            "org.opencontainers.image.ref.name": spec.name.split(":").pop()!,
          },
        },
      ],
    };
    await writeFile(join(layout, "index.json"), JSON.stringify(index));
    await writeFile(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await deterministicTar(layout, out, ["blobs", "index.json", "oci-layout"]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Imports an OCI archive into containerd's CRI namespace (k8s.io) through `ctr`. */
export async function importImageArchive(archive: string, containerdSocket: string): Promise<void> {
  await run("ctr", ["--address", containerdSocket, "--namespace", "k8s.io", "images", "import", archive]);
}
