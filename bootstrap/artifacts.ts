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
    // Upstream's OpenAPI definitions, read beside the bundle (controlplane/openapi/definitions.ts
    // resolves them from the loader's URL): without them every /openapi call fails and kubectl
    // apply's validation with it ("failed to download openapi").
    { from: "controlplane/openapi", to: HOST_PATHS.lib, files: ["k8s-definitions.json"] },
  ],
  // The CRI client carries its gRPC definitions inline (node/cri/api-proto.ts): nothing to ship.
  "lab-agent": [],
};

/**
 * What ships beside an executable's bundle: EXECUTABLE_ASSETS, and for lab-server its OpenAPI
 * documents rendered here, at build time, into `outDir/openapi-docs` (lab-server reads them from
 * there instead of rendering them on its event loop: controlplane/openapi/prerendered.ts).
 */
export async function executableAssets(
  name: ExecutableName,
  outDir: string,
): Promise<{ from: string; to: string; files: string[] }[]> {
  if (name !== "lab-server") return EXECUTABLE_ASSETS[name];
  const { prerenderOpenApi } = await import("../controlplane/openapi.ts");
  const { PRERENDERED_DIR, prerenderedFile } = await import("../controlplane/openapi/prerendered.ts");
  const dir = join(outDir, PRERENDERED_DIR);
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const d of prerenderOpenApi()) {
    const file = prerenderedFile(d.key);
    await writeFile(join(dir, file), d.body);
    files.push(file);
  }
  return [...EXECUTABLE_ASSETS[name], { from: dir, to: `${HOST_PATHS.lib}/${PRERENDERED_DIR}`, files }];
}

export function renderLauncher(name: string): string {
  return `#!/bin/sh\n# Written by lab: ${name} is a bundle run by lab's own Node runtime.\nexec ${HOST_PATHS.bin}/node ${HOST_PATHS.lib}/${name}.mjs "$@"\n`;
}

/**
 * The loader `NAME.mjs` that runs the bundle `NAME.cjs` through V8's code cache. Node 20 has no
 * module compile cache (`module.enableCompileCache` is Node 22) and its startup snapshots cannot
 * hold `node:http` (`--build-snapshot` fails in `methods.toSorted`), so the loader compiles the
 * CommonJS bundle with `vm.Script` and `cachedData`: the first run writes the cache beside the
 * bundle 30 s after start (or at exit, if sooner), with every function compiled by then; later
 * starts skip parsing and compiling them. The cache file is named by the bundle's hash (V8 checks
 * only the source length), a rejected one (another Node or other flags) is written again, and
 * LAB_V8_CACHE=0 turns it off.
 */
export function renderLoader(name: string, bundleSha256: string): string {
  const key = bundleSha256.slice(0, 16);
  return `// Written by lab: runs ${name}.cjs through V8's code cache (see bootstrap/artifacts.ts).
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
const bundle = fileURLToPath(import.meta.url).replace(/\\.mjs$/, ".cjs");
const dir = dirname(bundle);
const stem = basename(bundle, ".cjs");
const cacheFile = join(dir, \`.\${stem}-${key}.v8cache\`);
const useCache = process.env.LAB_V8_CACHE !== "0";
let cachedData;
if (useCache) {
  try {
    cachedData = readFileSync(cacheFile);
  } catch {}
}
const script = new vm.Script(
  "(function (exports, require, module, __filename, __dirname, __labImportMetaUrl) {" +
    readFileSync(bundle, "utf8") +
    "\\n})",
  { filename: bundle, ...(cachedData ? { cachedData } : {}) },
);
if (useCache && (!cachedData || script.cachedDataRejected)) {
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    try {
      const tmp = \`\${cacheFile}.\${process.pid}\`;
      writeFileSync(tmp, script.createCachedData(), { mode: 0o644 });
      renameSync(tmp, cacheFile);
      for (const f of readdirSync(dir))
        if (f.startsWith(\`.\${stem}-\`) && f.endsWith(".v8cache") && join(dir, f) !== cacheFile)
          rmSync(join(dir, f), { force: true });
    } catch {}
  };
  setTimeout(write, 30_000).unref();
  process.once("exit", write);
}
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, dir, import.meta.url);
`;
}

/**
 * Bundles `entry` into `outDir/NAME.cjs` (CommonJS, every npm dependency inlined) beside its loader
 * `NAME.mjs` (renderLoader) and writes its launcher. `import.meta.url` in the bundle is the
 * loader's URL, so an entry's "run when executed" check sees the file node was started with.
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
  const bundle = join(opts.outDir, `${opts.name}.cjs`);
  const loader = join(opts.outDir, `${opts.name}.mjs`);
  const tmp = `${bundle}.tmp-${process.pid}`;
  try {
    await build({
      entryPoints: [entry],
      outfile: tmp,
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      sourcemap: false,
      minify: false,
      legalComments: "none",
      // Assets travel inside the bundle: `import criProto from "./cri.proto"` gives the text.
      loader: { ".proto": "text", ".txt": "text" },
      logLevel: "silent",
      // The loader passes its own URL (renderLoader); CommonJS has no import.meta.
      define: { "import.meta.url": "__labImportMetaUrl" },
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
  const bundleSha256 = await sha256OfFile(bundle);
  await writeFile(loader, renderLoader(opts.name, bundleSha256));
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
        local: loader,
        remote: `${HOST_PATHS.lib}/${opts.name}.mjs`,
        mode: 0o644,
        sha256: await sha256OfFile(loader),
      },
      {
        local: bundle,
        remote: `${HOST_PATHS.lib}/${opts.name}.cjs`,
        mode: 0o644,
        sha256: bundleSha256,
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
      assets: await executableAssets(name, outDir),
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
