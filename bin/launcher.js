// Shared by bin/lab-server.js and bin/lab-agent.js. Started through `npx`, the process tree is
// `npm exec` → `sh -c` → node, and neither npm nor sh takes its child along when it is killed
// (SIGKILL cannot be forwarded; SIGTERM stops at sh): this process would outlive its launcher,
// e.g. a hollow node killed with `kill -9 <npx pid>` would keep heartbeating. So when an npm
// launcher is among the ancestors, the process watches that chain and stops itself (SIGTERM, the
// normal shutdown) once any link of it is gone. Started any other way, nothing is watched.
import { readFileSync } from "node:fs";
import { clearInterval, setInterval, setTimeout } from "node:timers";

/** comm, ppid and start time of a process from /proc, or undefined when it is gone. */
function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = s.lastIndexOf(")");
    const comm = s.slice(s.indexOf("(") + 1, close);
    const rest = s.slice(close + 2).split(" ");
    return { comm, ppid: Number(rest[1]), start: rest[19] };
  } catch {
    return undefined;
  }
}

const SHELLS = new Set(["sh", "dash", "bash"]);

export function exitWithLauncher(pollMs = 1000) {
  const chain = [];
  let pid = process.ppid;
  for (let depth = 0; depth < 4 && pid > 1; depth++) {
    const s = stat(pid);
    if (!s) return;
    chain.push({ pid, start: s.start });
    if (s.comm.startsWith("npm") || s.comm === "npx") {
      const timer = setInterval(() => {
        if (chain.every((a) => stat(a.pid)?.start === a.start)) return;
        clearInterval(timer);
        process.kill(process.pid, "SIGTERM");
        setTimeout(() => process.exit(1), 10_000).unref(); // a shutdown that hangs still ends
      }, pollMs);
      timer.unref();
      return;
    }
    if (!SHELLS.has(s.comm)) return; // not started by npx: leave the process alone
    pid = s.ppid;
  }
}
