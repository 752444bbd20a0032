/**
 * A time source that works offline: chrony on the first master serves its own clock (`local
 * stratum 10`, set from the lab host at each bootstrap) to the lab subnet; every other node follows
 * it and steps whenever it is more than 100 ms off. etcd and certificate checks want agreeing
 * clocks, not a correct one. lab's own unit and config, so a distribution's chrony.service (masked
 * by the bootstrap, recorded for `lab down`) and its internet pool play no part.
 */
import { HOST_PATHS } from "./paths.ts";
import { renderServiceUnit } from "./systemd.ts";

export const CHRONY_CONF = `${HOST_PATHS.etc}/chrony.conf`;
export const CHRONY_RUN_DIR = "/run/lab-chrony";
export const CHRONY_SOCKET = `${CHRONY_RUN_DIR}/chronyd.sock`;

export type ChronyRole = { serve: string } | { follow: string };

export function renderChronyConf(role: ChronyRole): string {
  const common = [
    "# Written by lab; `lab down` removes it.",
    `pidfile ${CHRONY_RUN_DIR}/chronyd.pid`,
    `bindcmdaddress ${CHRONY_SOCKET}`,
    "cmdport 0",
    // Step, never slew slowly: a TCG guest can be seconds off after a pause.
    "makestep 0.1 -1",
  ];
  const own =
    "serve" in role
      ? ["local stratum 10", `allow ${role.serve}`]
      : [`server ${role.follow} iburst minpoll 0 maxpoll 4`];
  return [...common, ...own].join("\n") + "\n";
}

export function renderChronyUnit(): string {
  return renderServiceUnit({
    description: "lab time source (chrony among the lab's nodes)",
    after: ["network-online.target"],
    wants: ["network-online.target"],
    // -u root: the pid file and socket live in lab's runtime directory, not the package's.
    exec: ["/usr/sbin/chronyd", "-d", "-u", "root", "-f", CHRONY_CONF],
    restart: "always",
    extra: [`RuntimeDirectory=${CHRONY_RUN_DIR.replace(/^\/run\//, "")}`],
  });
}
