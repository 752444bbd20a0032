/**
 * `lab image load`: an OCI or docker image archive imported into the containerd of every node (or
 * the named ones) over the bootstrap's SSH sessions — SFTP upload verified by sha256, then
 * `ctr -n k8s.io images import`, so the CRI (and lab-agent) sees the images at once.
 */
import { execFile } from "node:child_process";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { promisify } from "node:util";
import type { Machine } from "../provisioners/provisioner.ts";
import { NODE_CONTAINERD } from "../templates/lab-agent.ts";
import { LabError } from "../topology/errors.ts";
import { step, type Reporter } from "../topology/progress.ts";
import { sha256OfFile } from "../lib/digest.ts";
import { shq, SshSession } from "../ssh/session.ts";

const run = promisify(execFile);

/** `--nodes a,b` → names; empty means every machine. Pure. */
export function parseNodeList(text: string | undefined): string[] {
  return [
    ...new Set(
      (text ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
}

/** The machines to load into: all, or exactly the named ones (an unknown name is an error). Pure. */
export function selectMachines(machines: Machine[], names: string[], lab: string): Machine[] {
  if (machines.length === 0)
    throw new LabError({ code: "LAB_NOT_UP", what: `lab ${lab} has no machines`, fix: "run `lab up` first" });
  if (names.length === 0) return machines;
  const unknown = names.filter((n) => !machines.some((m) => m.name === n));
  if (unknown.length)
    throw new LabError({
      code: "NODE_UNKNOWN",
      what: `lab ${lab} has no node ${unknown.map((n) => `"${n}"`).join(", ")}`,
      fix: `use --nodes with names among: ${machines.map((m) => m.name).join(", ")}`,
      source: "user",
    });
  return machines.filter((m) => names.includes(m.name));
}

/** What kind of archive the member list says it is, or undefined when it is neither. Pure. */
export function archiveKind(members: string[]): "oci" | "docker" | undefined {
  const names = new Set(members.map((m) => m.replace(/^\.\//, "")));
  if (names.has("index.json") && names.has("oci-layout")) return "oci";
  if (names.has("manifest.json")) return "docker";
  return undefined;
}

/** Checks the file is a readable OCI/docker archive before any node is touched. */
export async function checkImageArchive(file: string): Promise<{ kind: "oci" | "docker"; bytes: number }> {
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile())
    throw new LabError({
      code: "IMAGE_ARCHIVE_MISSING",
      what: `${file} does not exist or is not a file`,
      fix: "give the path of an image archive (e.g. from `docker save`, `podman save`, `skopeo copy ... oci-archive:FILE.tar`)",
      source: "user",
    });
  const members = await run("tar", ["-tf", file], { maxBuffer: 64 * 1024 * 1024 }).then(
    (r) => r.stdout.split("\n").filter(Boolean),
    () => undefined,
  );
  const kind = members && archiveKind(members);
  if (!kind)
    throw new LabError({
      code: "IMAGE_ARCHIVE_INVALID",
      what: `${file} is not an image archive: ${members ? "it has neither index.json + oci-layout (OCI) nor manifest.json (docker)" : "it is not a tar file"}`,
      fix: "save the image as an OCI or docker archive (`docker save IMAGE -o FILE.tar`, `skopeo copy docker://IMAGE oci-archive:FILE.tar`)",
      source: "user",
    });
  return { kind, bytes: st.size };
}

export interface NodeLoadResult {
  node: string;
  ok: boolean;
  /** Image names containerd reported importing. */
  images: string[];
  error?: string;
  elapsedMs: number;
}

/** Image names in `ctr images import` output (`unpacking NAME (sha256:...)...done`). Pure. */
export function importedImages(output: string): string[] {
  return [...output.matchAll(/^unpacking (\S+) \(sha256:/gm)].map((m) => m[1]!);
}

/** Uploads and imports the archive on every machine in parallel; one failing node does not stop the others. */
export async function loadImageArchive(opts: {
  machines: Machine[];
  file: string;
  reporter: Reporter;
  signal?: AbortSignal;
  connect?: (m: Machine) => Promise<SshSession>;
  /** containerd's socket on the nodes and where archives are kept (tests point at their own). */
  containerdSocket?: string;
  remoteDir?: string;
}): Promise<NodeLoadResult[]> {
  const digest = await sha256OfFile(opts.file);
  const remote = `${opts.remoteDir ?? NODE_CONTAINERD.imagesDir}/${digest.slice(0, 16)}-${basename(opts.file).replace(/[^\w.-]/g, "_")}`;
  const ctr = `ctr --address ${shq(opts.containerdSocket ?? NODE_CONTAINERD.socket)} --namespace k8s.io`;
  const connect =
    opts.connect ?? ((m: Machine) => SshSession.connect(m, { signal: opts.signal, timeoutMs: 30_000 }));
  return Promise.all(
    opts.machines.map(async (m): Promise<NodeLoadResult> => {
      const started = Date.now();
      let s: SshSession | undefined;
      try {
        const images = await step(
          opts.reporter,
          "image.load",
          async () => {
            s = await connect(m);
            await s.upload({ file: opts.file, sha256: digest }, remote, { mode: 0o644, signal: opts.signal });
            const out = await s.run(`${ctr} images import ${shq(remote)}`, {
              root: true,
              what: `importing ${basename(opts.file)}`,
              signal: opts.signal,
            });
            return importedImages(out);
          },
          { node: m.name, message: `uploading and importing ${basename(opts.file)}` },
        );
        return { node: m.name, ok: true, images, elapsedMs: Date.now() - started };
      } catch (err) {
        return {
          node: m.name,
          ok: false,
          images: [],
          error: (err as Error).message,
          elapsedMs: Date.now() - started,
        };
      } finally {
        s?.close();
      }
    }),
  );
}
