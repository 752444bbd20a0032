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
  script "${c.checkScript ?? READYZ_CHECK}"
  interval 2
  # A stopped apiserver fails at once (connection refused), so detection stays fall x interval.
  # A slow answer still counts: lab-server answers from memory, but a TCG master busy importing
  # images took over 8 s to read the request, and the VIP flapped between masters.
  timeout 20
  fall 2
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
 * only. keepalived runs it every 2 s; an openssl TLS handshake per check cost a loaded TCG master a
 * quarter of its vCPU, bash's /dev/tcp costs next to nothing. A hung lab-server fails on the read
 * timeout (15 s), a stopped one at once (connection refused).
 */
export function renderReadyzCheck(healthPort: number): string {
  return `#!/bin/bash
# Written by lab: exits 0 when the local lab-server answers /readyz with 200.
exec 3<>/dev/tcp/127.0.0.1/${healthPort} || exit 1
printf 'GET /readyz HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3
read -r -t 15 status <&3 || exit 1
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
