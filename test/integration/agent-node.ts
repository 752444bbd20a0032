/**
 * A throwaway node for agent tests: a network namespace with a veth to the host (and a host route
 * to its pod CIDR, like a real node's route), a containerd started inside it on its own socket
 * and temp dirs, CNI bridge config on the pod CIDR, and the project's pause + sample images.
 * `destroy()` removes all of it, including shims and mounts, also after a failure.
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, rmdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { buildImageArchive, importImageArchive, PAUSE, PAUSE_IMAGE, SAMPLE } from "../../images/oci/build.ts";
import { CriClient } from "../../node/cri/client.ts";
import { renderCniConfig, renderContainerdConfig } from "../../templates/containerd-config.ts";

const run = promisify(execFile);

export interface TestNode {
  netns: string;
  dir: string;
  socket: string;
  podCidr: string;
  cgroupRoot: string;
  logRoot: string;
  /** Where this containerd mounts its pods' network namespaces (one file per sandbox). */
  podNetnsDir: string;
  cri: CriClient;
  /** Runs a command inside the node's network namespace. */
  inNetns(cmd: string[]): Promise<string>;
  destroy(): Promise<void>;
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freeSubnets(): Promise<{ pod: string; link: [string, string] }> {
  const { stdout } = await run("ip", ["-4", "route", "show"]);
  for (;;) {
    const a = randomInt(200, 250);
    const b = randomInt(1, 250);
    if (stdout.includes(`10.${a}.`)) continue;
    return { pod: `10.${a}.${b}.0/24`, link: [`10.${a}.255.1`, `10.${a}.255.2`] };
  }
}

export async function startTestNode(): Promise<TestNode> {
  const id = randomBytes(3).toString("hex");
  const netns = `lab-agent-${id}`;
  const dir = await mkdtemp(join(tmpdir(), "lab-agent-"));
  const socket = join(dir, "containerd.sock");
  const cgroupRoot = `/lab-test-${id}`;
  const { pod: podCidr, link } = await freeSubnets();
  const hostVeth = `lab${id}h`;
  let containerd: ChildProcess | undefined;
  let cri: CriClient | undefined;

  const destroy = async (): Promise<void> => {
    if (cri) {
      // sandboxes first: containerd's shims outlive containerd itself
      const sandboxes = await cri.listPodSandbox().catch(() => []);
      for (const s of sandboxes) {
        await cri.stopPodSandbox(s.id).catch(() => {});
        await cri.removePodSandbox(s.id).catch(() => {});
      }
      cri.close();
    }
    if (containerd?.pid && containerd.exitCode === null) {
      containerd.kill("SIGTERM");
      await waitFor(
        "containerd to exit",
        async () => containerd!.exitCode !== null || containerd!.signalCode !== null,
        10_000,
      ).catch(() => containerd!.kill("SIGKILL"));
    }
    // shims started for this containerd (their command line names its socket)
    for (const pid of await readdir("/proc").catch(() => [])) {
      if (!/^\d+$/.test(pid)) continue;
      const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      if (cmd.includes(socket)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    const mounts = (await readFile("/proc/mounts", "utf8")).split("\n").map((l) => l.split(" ")[1] ?? "");
    for (const m of mounts.filter((m) => m.startsWith(dir)).reverse())
      await run("umount", ["-l", m]).catch(() => {});
    for (const h of await readdir("/sys/fs/cgroup").catch(() => [])) {
      await removeCgroupTree(join("/sys/fs/cgroup", h, cgroupRoot));
    }
    await run("ip", ["link", "del", hostVeth]).catch(() => {});
    await run("ip", ["netns", "del", netns]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await run("ip", ["netns", "add", netns]);
    await run("ip", ["-n", netns, "link", "set", "lo", "up"]);
    await run("ip", ["link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    await run("ip", ["addr", "add", `${link[0]}/30`, "dev", hostVeth]);
    await run("ip", ["link", "set", hostVeth, "up"]);
    await run("ip", ["-n", netns, "addr", "add", `${link[1]}/30`, "dev", "eth0"]);
    await run("ip", ["-n", netns, "link", "set", "eth0", "up"]);
    // the node's route to its pods, as every other node would have (probes run from the host side)
    await run("ip", ["route", "add", podCidr, "via", link[1], "dev", hostVeth]);

    const cniDir = join(dir, "cni");
    await mkdir(cniDir, { recursive: true });
    await writeFile(
      join(cniDir, "10-lab.conflist"),
      renderCniConfig({ podCidr, bridge: `lab${id}`, ipamDataDir: join(dir, "ipam") }),
    );
    const config = join(dir, "config.toml");
    await writeFile(
      config,
      renderContainerdConfig({
        root: join(dir, "root"),
        state: join(dir, "state"),
        socket,
        cniConfDir: cniDir,
        sandboxImage: PAUSE_IMAGE,
        // so a sandbox destroy() could not remove still goes with `dir` (umount below), not /run/netns
        netnsUnderState: true,
        // the agent under test runs in the host namespace: it reaches the streaming server here
        streamServerAddress: link[1],
      }),
    );
    const log = join(dir, "containerd.log");
    const { openSync } = await import("node:fs");
    const fd = openSync(log, "a");
    containerd = spawn("nsenter", [`--net=/run/netns/${netns}`, "containerd", "--config", config], {
      stdio: ["ignore", fd, fd],
    });
    cri = new CriClient(socket);
    await waitFor(
      "containerd's CRI socket",
      async () => existsSync(socket) && (await cri!.version()).runtimeName === "containerd",
      20_000,
    );

    const images = join(dir, "images");
    await mkdir(images);
    for (const spec of [PAUSE, SAMPLE]) {
      const file = join(images, `${spec.name.replace(/[/:]/g, "_")}.tar`);
      await buildImageArchive(spec, file);
      await importImageArchive(file, socket);
    }
  } catch (err) {
    await destroy();
    throw err;
  }

  return {
    netns,
    dir,
    socket,
    podCidr,
    cgroupRoot,
    logRoot: join(dir, "pods"),
    podNetnsDir: join(dir, "state", "io.containerd.grpc.v1.cri", "netns"),
    cri,
    async inNetns(cmd) {
      const { stdout } = await run("nsenter", [`--net=/run/netns/${netns}`, ...cmd], { timeout: 10_000 });
      return stdout;
    },
    destroy,
  };
}

async function removeCgroupTree(path: string): Promise<void> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => undefined);
  if (!entries) return;
  for (const e of entries) if (e.isDirectory()) await removeCgroupTree(join(path, e.name));
  await rmdir(path).catch(() => {});
}

/** The end of an agent's log, where the reason a wait timed out usually is. */
export const agentLogTail = (log: string): string => `agent log:\n${log.slice(-3000)}`;
