import type { Command } from "commander";
import { imageCacheDir, listImages, removeImages } from "../../images/cache.ts";
import { buildImage } from "../../images/build.ts";
import { loadRecipe, recipeKey } from "../../images/recipe.ts";
import {
  checkImageArchive,
  loadImageArchive,
  parseNodeList,
  selectMachines,
} from "../../bootstrap/image-load.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { LabError } from "../../topology/errors.ts";
import { LabState } from "../../topology/state.ts";
import { resolveLabName } from "./lab-name.ts";
import { printJson, type GlobalOptions } from "../output.ts";
import { createReporter, printResultLine } from "../progress.ts";

export function registerImage(program: Command): void {
  const image = program
    .command("image")
    .description("guest base images (build, ls, rm); container images into a lab's nodes (load)");
  image
    .command("build [RECIPE]")
    .description("build a guest image (default recipe debian-12); instant when the cache has it")
    .option("--force", "rebuild even when cached")
    .action(async (recipeName: string | undefined, opts: { force?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const recipe = await loadRecipe(recipeName);
      const reporter = createReporter({ json: g.json });
      let img: Awaited<ReturnType<typeof buildImage>>;
      try {
        img = await buildImage(recipe, { reporter, force: opts.force });
      } finally {
        await reporter.close();
      }
      if (g.json)
        printResultLine({
          key: img.key,
          cached: img.cached,
          dir: img.dir,
          sizeBytes: img.sizeBytes,
        });
      else
        process.stdout.write(
          `${img.key} ${img.cached ? "(cached)" : `built in ${img.buildSeconds} s`}: ${img.dir} (${mib(img.sizeBytes)})\n`,
        );
    });
  image
    .command("ls")
    .description("list cached images")
    .action(async (_opts: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const images = await listImages();
      if (g.json) {
        printJson(
          images.map(({ key, recipe, builtAt, sizeBytes, dir }) => ({
            key,
            recipe,
            builtAt,
            sizeBytes,
            dir,
          })),
        );
        return;
      }
      if (images.length === 0) process.stdout.write(`no images in ${imageCacheDir()} (lab image build)\n`);
      for (const i of images)
        process.stdout.write(`${i.key}  ${i.recipe}  ${i.builtAt}  ${mib(i.sizeBytes)}\n`);
    });
  registerLoad(image);
  image
    .command("rm <KEY|RECIPE>")
    .description("remove cached images by key or recipe name (labs using them must be down)")
    .action(async (which: string, _opts: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      let removed = await removeImages(which);
      if (removed.length === 0 && (await loadRecipe(which).catch(() => undefined))) {
        removed = await removeImages(recipeKey(await loadRecipe(which)));
      }
      if (removed.length === 0) {
        throw new LabError({
          code: "IMAGE_NOT_CACHED",
          what: `no cached image matches "${which}"`,
          fix: "see `lab image ls`",
        });
      }
      if (g.json) printJson({ removed });
      else process.stdout.write(`removed ${removed.join(", ")}\n`);
    });
}

/** `lab image load FILE.tar`: the archive into every (or the listed) node's containerd. */
function registerLoad(image: Command): void {
  image
    .command("load <FILE>")
    .description("import an OCI or docker image archive into the containerd of every node (or --nodes)")
    .option("--nodes <names>", "comma-separated node names (default: every node)")
    .option("-n, --lab <NAME>", "lab name (instead of -f)")
    .option("-f, --file <FILE>", "topology file naming the lab")
    .action(async (file: string, opts: { nodes?: string; lab?: string; file?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { bytes } = await checkImageArchive(file);
      const labName = await resolveLabName(opts.lab, opts.file);
      const machines = (await new LabState(labName).readJson<Machine[]>("machines.json")) ?? [];
      const targets = selectMachines(machines, parseNodeList(opts.nodes), labName);
      const reporter = createReporter({ json: g.json, nodes: targets.map((m) => m.name) });
      let results: Awaited<ReturnType<typeof loadImageArchive>>;
      try {
        results = await loadImageArchive({ machines: targets, file, reporter });
      } finally {
        await reporter.close();
      }
      const failed = results.filter((r) => !r.ok);
      if (g.json) printResultLine({ file, bytes, lab: labName, nodes: results });
      else
        for (const r of results)
          process.stdout.write(
            r.ok
              ? `${r.node}: imported ${r.images.join(", ") || "(no named images)"} in ${(r.elapsedMs / 1000).toFixed(1)} s\n`
              : `${r.node}: failed: ${r.error}\n`,
          );
      if (failed.length)
        throw new LabError({
          code: "IMAGE_LOAD_FAILED",
          what: `loading ${file} failed on ${failed.map((r) => r.node).join(", ")}`,
          fix: "see the per-node errors above; `lab ssh NODE` to look at containerd, then rerun (unchanged uploads are skipped)",
          source: "host",
        });
    });
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`;
}
