import { describe, expect, it } from "vitest";
import {
  etcdArgs,
  etcdClientURLs,
  etcdHostFiles,
  etcdInitialCluster,
  renderEtcdUnit,
} from "../../../templates/etcd.ts";
import {
  interfaceFor,
  renderKeepalivedConf,
  renderReadyzCheck,
  virtualRouterIdFor,
} from "../../../templates/keepalived.ts";
import { labServerArgs, renderLabServerUnit } from "../../../templates/lab-server.ts";
import { renderLabAgentUnit } from "../../../templates/lab-agent.ts";
import { renderServiceUnit, systemdQuote } from "../../../templates/systemd.ts";

const members = [
  { name: "master-1", address: "10.0.0.11" },
  { name: "master-2", address: "10.0.0.12" },
  { name: "master-3", address: "10.0.0.13" },
];

/** The options of member `i` of `members`, with the host's usual file paths. */
const etcdMemberOptions = (i: number, clusterToken: string, dataDir: string) => ({
  member: members[i]!,
  cluster: members,
  clusterToken,
  dataDir,
  files: etcdHostFiles(),
});

describe("etcd templates", () => {
  it("builds the static initial cluster for 1, 3 and 5 members and refuses other sizes", () => {
    expect(etcdInitialCluster(members.slice(0, 1))).toBe("master-1=https://10.0.0.11:2380");
    expect(etcdInitialCluster(members)).toBe(
      "master-1=https://10.0.0.11:2380,master-2=https://10.0.0.12:2380,master-3=https://10.0.0.13:2380",
    );
    const five = [
      ...members,
      { name: "m4", address: "10.0.0.14" },
      { name: "m5", address: "10.0.0.15", peerPort: 2390 },
    ];
    expect(etcdInitialCluster(five).split(",")).toHaveLength(5);
    expect(etcdInitialCluster(five)).toContain("m5=https://10.0.0.15:2390");
    expect(() => etcdInitialCluster(members.slice(0, 2))).toThrow(/1, 3 or 5/);
    expect(etcdClientURLs(members)).toBe(
      "https://10.0.0.11:2379,https://10.0.0.12:2379,https://10.0.0.13:2379",
    );
  });

  it("turns on peer and client TLS with verified certificates", () => {
    const args = etcdArgs(etcdMemberOptions(1, "lab-x", "/d"));
    expect(args).toEqual(
      expect.arrayContaining([
        "--name=master-2",
        "--client-cert-auth=true",
        "--peer-client-cert-auth=true",
        "--listen-peer-urls=https://10.0.0.12:2380",
        "--listen-client-urls=https://10.0.0.12:2379,https://127.0.0.1:2379",
        "--trusted-ca-file=/etc/lab/pki/etcd/ca.crt",
        "--peer-key-file=/etc/lab/pki/etcd/peer.key",
        "--initial-cluster-state=new",
        "--initial-cluster-token=lab-x",
      ]),
    );
    expect(args.join(" ")).not.toContain("http://");
  });

  it("renders a systemd unit running the Debian etcd as the etcd user", () => {
    const unit = renderEtcdUnit({ ...etcdMemberOptions(0, "t", "/var/lib/lab/etcd"), arch: "aarch64" });
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/etcd \\\n {2}--name=master-1 \\/m);
    expect(unit).toContain("User=etcd");
    expect(unit).toContain("Type=notify");
    expect(unit).toContain("Environment=ETCD_UNSUPPORTED_ARCH=arm64");
    expect(unit).toContain("WantedBy=multi-user.target");
  });
});

describe("lab-server and lab-agent units", () => {
  /** lab-server on master-1 of `members`. */
  const server = {
    address: "10.0.0.11",
    etcdServers: "https://a:2379",
    serviceClusterIPRange: "10.96.0.0/16",
    securePort: 6443,
  };

  it("passes the whole etcd cluster and the TLS files to lab-server", () => {
    const args = labServerArgs({ ...server, etcdServers: etcdClientURLs(members) });
    expect(args).toContain(
      "--etcd-servers=https://10.0.0.11:2379,https://10.0.0.12:2379,https://10.0.0.13:2379",
    );
    expect(args).toContain("--client-ca-file=/etc/lab/pki/ca.crt");
    expect(args).toContain("--advertise-address=10.0.0.11");
    const unit = renderLabServerUnit(server);
    expect(unit).toContain("ExecStart=/opt/lab/bin/lab-server");
    expect(unit).toContain("Restart=always");
  });

  it("starts the scheduler and controllers in lab-server with their own credentials and the pod network", () => {
    expect(labServerArgs(server).some((a) => a.startsWith("--kubeconfig"))).toBe(false);
    const args = labServerArgs({
      ...server,
      loops: { clusterCIDR: "10.244.0.0/16", nodeCIDRMaskSize: 24, podEvictionTimeoutSeconds: 60 },
    });
    expect(args).toEqual(
      expect.arrayContaining([
        "--kubeconfig=/etc/lab/server/controller-manager.kubeconfig",
        "--cluster-cidr=10.244.0.0/16",
        "--node-cidr-mask-size=24",
        "--pod-eviction-timeout=60",
      ]),
    );
  });

  it("registers masters with a NoSchedule taint and keeps containers when the agent restarts", () => {
    const unit = renderLabAgentUnit({
      nodeName: "master-1",
      nodeIP: "10.0.0.11",
      podCIDR: "10.244.0.0/24",
      apiServers: ["https://10.0.0.10:6443", "https://10.0.0.11:6443"],
      clusterDomain: "cluster.local",
      clusterDNS: "10.96.0.10",
      serviceClusterIPRange: "10.96.0.0/16",
      taints: ["node-role.kubernetes.io/control-plane:NoSchedule"],
      labels: { "node-role.kubernetes.io/control-plane": "" },
    });
    expect(unit).toContain("--register-with-taints=node-role.kubernetes.io/control-plane:NoSchedule");
    expect(unit).toContain("--api-servers=https://10.0.0.10:6443,https://10.0.0.11:6443");
    expect(unit).toContain("KillMode=process");
  });

  it("quotes arguments the way systemd reads them", () => {
    expect(systemdQuote("--a=b")).toBe("--a=b");
    expect(systemdQuote("has space")).toBe('"has space"');
    expect(systemdQuote("100%")).toBe("100%%");
    const u = renderServiceUnit({ description: "d", exec: ["/bin/x", "a b"] });
    expect(u).toContain('ExecStart=/bin/x \\\n  "a b"');
  });
});

describe("keepalived", () => {
  const conf = renderKeepalivedConf({
    name: "master-2",
    address: "10.0.0.12",
    peers: ["10.0.0.11", "10.0.0.13"],
    iface: "ens3",
    vip: "10.0.0.10",
    prefix: 24,
    virtualRouterId: 42,
    priority: 110,
    apiServerPort: 6443,
  });
  it("puts the VIP on the master's interface, unicast to the other masters, tracking the apiserver", () => {
    expect(conf).toContain("10.0.0.10/24 dev ens3");
    expect(conf).toContain("unicast_src_ip 10.0.0.12");
    expect(conf).toMatch(/unicast_peer \{\n\s+10\.0\.0\.11\n\s+10\.0\.0\.13\n\s+\}/);
    expect(conf).toContain("virtual_router_id 42");
    expect(conf).toContain("track_script {\n    apiserver_ready");
    expect(renderReadyzCheck(6444)).toContain("/dev/tcp/127.0.0.1/6444");
    expect(renderReadyzCheck(6444)).toContain("GET /readyz");
  });
  it("bounds the apiserver check below its interval, so keepalived never overlaps two runs", () => {
    const script = /vrrp_script apiserver_ready \{[^}]*\}/.exec(conf)![0];
    const num = (k: string) => Number(new RegExp(`\\n\\s*${k} ([\\d.]+)\\n`).exec(script)?.[1]);
    const bound = Number(
      /script "\/usr\/bin\/timeout -s KILL ([\d.]+) \/\S+\/check-apiserver"/.exec(script)?.[1],
    );
    expect(bound).toBeGreaterThan(0);
    expect(bound).toBeLessThan(num("interval"));
    expect(num("timeout")).toBeLessThanOrEqual(num("interval"));
    // Detection: fall runs in a row, each at most interval apart, plus the bound; under 5 s with the skew.
    expect(num("fall") * num("interval") + bound + 1).toBeLessThanOrEqual(5);
    // ...and tolerant: one or two slow answers of a starved TCG guest are not a move.
    expect(num("fall")).toBeGreaterThanOrEqual(3);
    expect(Number(/read -r -t ([\d.]+)/.exec(renderReadyzCheck(6444))?.[1])).toBeLessThan(bound);
  });
  it("holds an explicit VIP on a single master without peers", () => {
    const one = renderKeepalivedConf({
      name: "master-1",
      address: "10.0.0.11",
      peers: [],
      iface: "ens3",
      vip: "10.0.0.10",
      prefix: 24,
      virtualRouterId: 42,
      priority: 150,
      apiServerPort: 6443,
    });
    expect(one).toContain("10.0.0.10/24 dev ens3");
    expect(one).not.toContain("unicast_peer");
  });
  it("derives a stable router id in 1..254 and finds the interface of an address", () => {
    for (const id of ["000000", "ffffff", "a1b2c3"]) {
      const v = virtualRouterIdFor(id);
      expect(v).toBeGreaterThanOrEqual(1);
      expect(v).toBeLessThanOrEqual(254);
    }
    const ip =
      "1: lo    inet 127.0.0.1/8 scope host lo\n2: ens3    inet 10.0.0.12/24 brd 10.0.0.255 scope global ens3\n3: eth1@if9    inet 10.1.0.2/24 scope global eth1";
    expect(interfaceFor(ip, "10.0.0.12")).toBe("ens3");
    expect(interfaceFor(ip, "10.1.0.2")).toBe("eth1");
    expect(interfaceFor(ip, "10.9.9.9")).toBeUndefined();
  });
});
