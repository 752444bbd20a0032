/**
 * The project's executables as self-contained artifacts: an esbuild bundle of an entry file (every
 * npm dependency inlined) plus the Node runtime that runs the lab (a copy of process.execPath) and a
 * tiny launcher script. Nothing is npm-installed on a target; the bootstrap uploads these files and
 * skips those whose sha256 is already there.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile, rename } from "node:fs/promises";
import { join, posix, resolve } from "node:path";
import { build } from "esbuild";
import { sha256OfFile } from "../lib/digest.ts";
import { LabError } from "../topology/errors.ts";
import { HOST_PATHS } from "../templates/paths.ts";

export interface ArtifactFile {
  /** Local file to upload. */
  local: string;
  /** Where it goes on a machine. */
  remote: string;
  mode: number;
  sha256: string;
}

export interface Artifact {
  name: string;
  files: ArtifactFile[];
}

/** The executables lab installs and their entry files, relative to the repository root. */
export const EXECUTABLES = {
  "lab-server": "controlplane/main.ts",
  "lab-agent": "node/main.ts",
} as const;

export type ExecutableName = keyof typeof EXECUTABLES;

/**
 * Files a bundle reads at run time from a path relative to its own module, shipped beside it.
 * etcd3 loads `${__dirname}/../proto/rpc.proto` (and the files it imports): with the bundle in
 * HOST_PATHS.lib, that is `<lib>/../proto/`.
 */
export const EXECUTABLE_ASSETS: Record<ExecutableName, { from: string; to: string; files: string[] }[]> = {
  "lab-server": [
    {
      from: "node_modules/etcd3/proto",
      to: `${HOST_PATHS.opt}/proto`,
      files: ["rpc.proto", "kv.proto", "auth.proto"],
    },
  ],
  // The CRI client carries its gRPC definitions inline (node/cri/api-proto.ts): nothing to ship.
  "lab-agent": [],
};

export function renderLauncher(name: string): string {
  return `#!/bin/sh\n# Written by lab: ${name} is a bundle run by lab's own Node runtime.\nexec ${HOST_PATHS.bin}/node ${HOST_PATHS.lib}/${name}.mjs "$@"\n`;
}

/**
 * Bundles `entry` into `outDir/NAME.mjs` and writes its launcher. ESM output with a `require`
 * shim, because some dependencies (grpc, protobuf) still call require() for Node built-ins.
 */
export async function buildExecutable(opts: {
  name: string;
  entry: string;
  outDir: string;
  /** Run-time files to ship beside the bundle (see EXECUTABLE_ASSETS); `from` is relative to `root`. */
  assets?: { from: string; to: string; files: string[] }[];
  root?: string;
}): Promise<Artifact> {
  const entry = resolve(opts.entry);
  if (!existsSync(entry)) {
    throw new LabError({
      code: "ARTIFACT_ENTRY_MISSING",
      what: `cannot build ${opts.name}: ${opts.entry} does not exist`,
      fix: "run lab from a checkout of the lab repository that contains it",
      source: "internal",
    });
  }
  await mkdir(opts.outDir, { recursive: true });
  const bundle = join(opts.outDir, `${opts.name}.mjs`);
  const tmp = `${bundle}.tmp-${process.pid}`;
  try {
    await build({
      entryPoints: [entry],
      outfile: tmp,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      sourcemap: false,
      minify: false,
      legalComments: "none",
      // Assets travel inside the bundle: `import criProto from "./cri.proto"` gives the text.
      loader: { ".proto": "text", ".txt": "text" },
      logLevel: "silent",
      banner: {
        // CommonJS dependencies also expect __dirname/__filename (etcd3 finds its .proto files by them).
        js: [
          'import { createRequire as __labCreateRequire } from "node:module";',
          'import { fileURLToPath as __labFileURLToPath } from "node:url";',
          'import { dirname as __labDirname } from "node:path";',
          "const require = __labCreateRequire(import.meta.url);",
          "const __filename = __labFileURLToPath(import.meta.url);",
          "const __dirname = __labDirname(__filename);",
        ].join(" "),
      },
    });
  } catch (err) {
    throw new LabError({
      code: "ARTIFACT_BUILD_FAILED",
      what: `bundling ${opts.name} from ${opts.entry} failed: ${(err as Error).message.split("\n").slice(0, 5).join(" ")}`,
      source: "internal",
      cause: err,
    });
  }
  await rename(tmp, bundle);
  const launcher = join(opts.outDir, opts.name);
  await writeFile(launcher, renderLauncher(opts.name), { mode: 0o755 });
  const assets: ArtifactFile[] = [];
  for (const a of opts.assets ?? []) {
    for (const f of a.files) {
      const local = join(resolve(opts.root ?? ".", a.from), f);
      assets.push({
        local,
        remote: posix.normalize(`${a.to}/${f}`),
        mode: 0o644,
        sha256: await sha256OfFile(local),
      });
    }
  }
  return {
    name: opts.name,
    files: [
      ...assets,
      {
        local: bundle,
        remote: `${HOST_PATHS.lib}/${opts.name}.mjs`,
        mode: 0o644,
        sha256: await sha256OfFile(bundle),
      },
      {
        local: launcher,
        remote: `${HOST_PATHS.bin}/${opts.name}`,
        mode: 0o755,
        sha256: await sha256OfFile(launcher),
      },
    ],
  };
}

/**
 * The Node runtime shipped next to the bundles: the one running lab (same major, known good).
 * Hashed once per process: it is ~100 MB and every step on every node asks for it.
 */
let runtimeSha256: Promise<string> | undefined;
export async function nodeRuntime(): Promise<ArtifactFile> {
  runtimeSha256 ??= sha256OfFile(process.execPath);
  runtimeSha256.catch(() => (runtimeSha256 = undefined));
  return {
    local: process.execPath,
    remote: `${HOST_PATHS.bin}/node`,
    mode: 0o755,
    sha256: await runtimeSha256,
  };
}

/** Builds both executables from the repository at `repoRoot` into `outDir`. */
export async function buildLabExecutables(
  repoRoot: string,
  outDir: string,
): Promise<Record<ExecutableName, Artifact>> {
  const out = {} as Record<ExecutableName, Artifact>;
  for (const [name, entry] of Object.entries(EXECUTABLES) as [ExecutableName, string][]) {
    out[name] = await buildExecutable({
      name,
      entry: join(repoRoot, entry),
      outDir,
      assets: EXECUTABLE_ASSETS[name],
      root: repoRoot,
    });
  }
  return out;
}

/** Reads a built artifact's bytes (for tests and for size reports). */
export async function artifactSize(a: Artifact): Promise<number> {
  let n = 0;
  for (const f of a.files) n += (await readFile(f.local)).length;
  return n;
}
