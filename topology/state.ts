/**
 * Lab state on disk: one directory per lab under $LAB_HOME (default $XDG_STATE_HOME/lab, else
 * ~/.local/state/lab). Files are written atomically (temp file + rename); secrets are 0600; a lock
 * file stops two commands from mutating one lab at once and says who holds it.
 */
import { closeSync, constants, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir, hostname } from "node:os";
import { dirname, join } from "node:path";
import { LabError } from "./errors.ts";

export function labHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LAB_HOME) return env.LAB_HOME;
  const xdg = env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  return join(xdg, "lab");
}

export function labsDir(home = labHome()): string {
  return join(home, "labs");
}

export function imagesDir(home = labHome()): string {
  return join(home, "images");
}

/** Writes a file atomically: readers see the old or the new content, never half of it. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

export interface LockInfo {
  pid: number;
  host: string;
  command: string;
  since: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** One lab's directory. */
export class LabState {
  readonly dir: string;
  private lockHeld = false;

  constructor(
    readonly name: string,
    home = labHome(),
  ) {
    this.dir = join(labsDir(home), name);
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  async ensure(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  async readJson<T>(file: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(this.path(file), "utf8")) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new LabError({
        code: "STATE_CORRUPT",
        what: `cannot read lab state ${this.path(file)}: ${(err as Error).message}`,
        fix: `run \`lab down ${this.name}\` to clean up, then \`lab up\` again`,
        source: "host",
      });
    }
  }

  async writeJson(file: string, value: unknown, opts: { secret?: boolean } = {}): Promise<void> {
    await writeFileAtomic(
      this.path(file),
      JSON.stringify(value, null, 2) + "\n",
      opts.secret ? 0o600 : 0o644,
    );
  }

  async writeSecret(file: string, data: string | Uint8Array): Promise<void> {
    await writeFileAtomic(this.path(file), data, 0o600);
  }

  /**
   * Takes the lab's lock for a mutating command. A lock left by a dead process on this host is
   * taken over; a live holder makes this fail with who holds it and since when.
   */
  async lock(command: string): Promise<void> {
    await this.ensure();
    const file = this.path("lock");
    const me: LockInfo = { pid: process.pid, host: hostname(), command, since: new Date().toISOString() };
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
        writeSync(fd, JSON.stringify(me));
        closeSync(fd);
        this.lockHeld = true;
        const release = () => this.unlockSync();
        process.once("exit", release);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        let holder: LockInfo | undefined;
        try {
          holder = JSON.parse(readFileSync(file, "utf8")) as LockInfo;
        } catch {
          holder = undefined;
        }
        if (holder && holder.host === hostname() && !pidAlive(holder.pid)) {
          unlinkSync(file); // stale: its owner died without releasing it
          continue;
        }
        throw new LabError({
          code: "LAB_LOCKED",
          what: holder
            ? `lab "${this.name}" is locked by \`${holder.command}\` (pid ${holder.pid} on ${holder.host}, since ${holder.since})`
            : `lab "${this.name}" is locked (${file})`,
          fix: "wait for that command to finish, or stop it; a lock of a dead process is taken over automatically",
          source: "user",
        });
      }
    }
  }

  unlockSync(): void {
    if (!this.lockHeld) return;
    try {
      unlinkSync(this.path("lock"));
    } catch {
      // already gone
    }
    this.lockHeld = false;
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
