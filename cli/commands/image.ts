import type { Command } from "commander";
import { imageCacheDir, listImages, removeImages } from "../../images/cache.ts";
import { buildImage } from "../../images/build.ts";
import { loadRecipe, recipeKey } from "../../images/recipe.ts";
import { LabError } from "../../topology/errors.ts";
import { printJson, type GlobalOptions } from "../output.ts";
import { createReporter, printResultLine } from "../progress.ts";

export function registerImage(program: Command): void {
  const image = program.command("image").description("guest base images: build, list, remove");
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

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`;
}
