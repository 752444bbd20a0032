/**
 * keepalived VRRP among the masters: the VIP sits on one master whose apiserver answers /readyz,
 * and moves when that master or its apiserver dies. Unicast peers, so it works on networks that
 * drop multicast (many bare-metal switches, some bridges).
 */
import { HOST_PATHS } from "./paths.ts";
import { renderServiceUnit } from "./systemd.ts";

export interface KeepalivedConfig {
  /** This master's name and address. */
  name: string;
  address: string;
  /** The other masters' addresses. */
  peers: string[];
  /** Interface that carries `address` on this master. */
  iface: string;
  vip: string;
  prefix: number;
  /** 1–255, the same on every master of one lab, different between labs on one network. */
  virtualRouterId: number;
  /** Higher wins when healthy; distinct per master so the election is deterministic. */
  priority: number;
  apiServerPort: number;
  /** The /readyz check's path (default READYZ_CHECK); tests point it elsewhere. */
  checkScript?: string;
}

export const KEEPALIVED_CONF = `${HOST_PATHS.etc}/keepalived.conf`;
export const READYZ_CHECK = `${HOST_PATHS.bin}/check-apiserver`;

/** keepalived runs the check this often (whole seconds: keepalived takes no fractions). */
export const CHECK_INTERVAL_S = 1;
/**
 * The check's own bound, below the interval; the script's read gives up a little earlier. With the
 * health port answered from the API's own loop, a loaded TCG master missed it three times in a row
 * on CI's default lab, every master in turn, and no master held the VIP; the port now has a thread
 * of its own (controlplane/server/health-thread.ts), so the bound only has to cover bash's start.
 */
export const CHECK_BOUND_S = 0.9;
/** Failed checks in a row before the master gives up the VIP. */
export const CHECK_FALL = 3;
/** coreutils timeout (Debian: /usr/bin/timeout), bounding the check. */
export const CHECK_TIMEOUT_BIN = "/usr/bin/timeout";

/** One VRRP instance id per lab, from its id (hex), kept out of 0 and 255. */
export function virtualRouterIdFor(labId: string): number {
  return (parseInt(labId.slice(0, 4), 16) % 254) + 1;
}

export function renderKeepalivedConf(c: KeepalivedConfig): string {
  return `# Written by lab; \`lab down\` removes it.
global_defs {
  router_id ${c.name}
  script_user root
  enable_script_security
}

vrrp_script apiserver_ready {
  # Bounded below the interval, so runs never overlap ("already running ... skipping run"):
  # coreutils timeout kills the check after ${CHECK_BOUND_S} s whatever hangs (the read, or the connect
  # once a stopped server's backlog is full); keepalived's own timeout (whole seconds, at least 1)
  # is only the backstop. ${CHECK_FALL} failures in a row: an API that stops answering loses the VIP
  # within ${CHECK_FALL} x ${CHECK_INTERVAL_S} s + ${CHECK_BOUND_S} s plus the backup's skew (< 1 s), under 5 s;
  # one or two slow answers of a busy (TCG) master do not move it.
  script "${CHECK_TIMEOUT_BIN} -s KILL ${CHECK_BOUND_S} ${c.checkScript ?? READYZ_CHECK}"
  interval ${CHECK_INTERVAL_S}
  timeout ${CHECK_INTERVAL_S}
  fall ${CHECK_FALL}
  rise 1
}

vrrp_instance lab_api {
  state BACKUP
  interface ${c.iface}
  virtual_router_id ${c.virtualRouterId}
  priority ${c.priority}
  advert_int 1
  # No preemption: a recovered master does not take the VIP back and cause a second blip.
  nopreempt
${
  c.peers.length
    ? `  unicast_src_ip ${c.address}
  unicast_peer {
${c.peers.map((p) => `    ${p}`).join("\n")}
  }
`
    : "  # A single master: no peers to advertise to.\n"
}  virtual_ipaddress {
    ${c.vip}/${c.prefix} dev ${c.iface}
  }
  track_script {
    apiserver_ready
  }
}
`;
}

/**
 * The health check: GET /readyz on lab-server's plain-HTTP health port, which listens on 127.0.0.1
 * only, answered by a thread of its own (controlplane/server/health-thread.ts). keepalived runs it
 * every second under `timeout 0.9`; an openssl TLS handshake per check cost a loaded TCG master a
 * quarter of its vCPU, bash's /dev/tcp costs next to nothing. A stopped (SIGSTOP) lab-server fails on
 * the read bound (0.8 s), a dead one at once (connection refused), a hung main loop after 5 s (503).
 */
export function renderReadyzCheck(healthPort: number): string {
  return `#!/bin/bash
# Written by lab: exits 0 when the local lab-server answers /readyz with 200 within 0.8 s.
exec 3<>/dev/tcp/127.0.0.1/${healthPort} || exit 1
printf 'GET /readyz HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3
read -r -t 0.8 status <&3 || exit 1
[[ $status == *" 200 "* ]]
`;
}

export function renderKeepalivedUnit(): string {
  return renderServiceUnit({
    description: "lab API VIP (keepalived VRRP)",
    after: ["network-online.target"],
    wants: ["network-online.target"],
    exec: ["/usr/sbin/keepalived", "--dont-fork", "--log-console", "--use-file", KEEPALIVED_CONF],
    restart: "always",
  });
}

/** The interface that carries `address`, from `ip -o -4 addr show` output. */
export function interfaceFor(ipAddrOutput: string, address: string): string | undefined {
  for (const line of ipAddrOutput.split("\n")) {
    const m = /^\d+:\s+(\S+)\s+inet\s+([\d.]+)\//.exec(line.trim());
    if (m && m[2] === address) return m[1]!.replace(/@.*$/, "");
  }
  return undefined;
}
