import type { ResourceInfo } from "../../../api/resources.ts";
import { invalid } from "../../../api/status.ts";
import { NOTHING, Strategy, type Rollback, type StrategyContext } from "../strategy.ts";
import type { KObject, UpdateMode } from "../types.ts";

type Obj = Record<string, unknown>;
interface Port {
  port?: number;
  protocol?: string;
  nodePort?: number;
}

const spec = (svc: KObject | undefined): Obj => (svc?.spec ?? {}) as Obj;
const ports = (svc: KObject | undefined): Port[] => (spec(svc).ports as Port[] | undefined) ?? [];
const nodePorts = (svc: KObject | undefined): number[] =>
  ports(svc)
    .map((p) => p.nodePort)
    .filter((n): n is number => typeof n === "number");
const owner = (svc: KObject): string => `${svc.metadata.namespace}/${svc.metadata.name}`;

function clusterIpInvalid(svc: KObject, value: string, detail: string): Error {
  return invalid("Service", svc.metadata.name!, [
    { field: "spec.clusterIP", reason: "FieldValueInvalid", message: `Invalid value: "${value}": ${detail}` },
  ]);
}

/** Services: a cluster IP from the service range and node ports from 30000-32767, held in etcd. */
export class ServiceStrategy extends Strategy {
  constructor(
    info: ResourceInfo,
    private readonly ctx: StrategyContext,
  ) {
    super(info);
  }

  override async beforeCreate(svc: KObject, dryRun: boolean): Promise<Rollback> {
    if (dryRun) return NOTHING;
    const ip = await this.assignClusterIp(svc);
    const releaseIp = async (): Promise<void> => {
      if (ip) await this.ctx.serviceIps.release(ip);
    };
    let claimed: number[];
    try {
      claimed = await this.assignNodePorts(svc, undefined);
    } catch (err) {
      await releaseIp();
      throw err;
    }
    return async () => {
      await releaseIp();
      for (const p of claimed) await this.ctx.nodePorts.release(p);
    };
  }

  private async assignClusterIp(svc: KObject): Promise<string | undefined> {
    const s = (svc.spec ??= {}) as Obj;
    if (s.type === "ExternalName" || s.clusterIP === "None") return undefined;
    const want = typeof s.clusterIP === "string" && s.clusterIP !== "" ? s.clusterIP : undefined;
    if (want) {
      if (!this.ctx.serviceIps.contains(want))
        throw clusterIpInvalid(svc, want, "provided IP is not in the valid range");
      if (!(await this.ctx.serviceIps.claim(want, owner(svc))))
        throw clusterIpInvalid(svc, want, "provided IP is already allocated");
      s.clusterIPs = [want];
      return want;
    }
    const ip = await this.ctx.serviceIps.allocate(owner(svc));
    s.clusterIP = ip;
    s.clusterIPs = [ip];
    s.ipFamilies = ["IPv4"];
    s.ipFamilyPolicy = "SingleStack";
    return ip;
  }

  /** Gives NodePort/LoadBalancer ports a node port (kept from `current` when already set there). */
  private async assignNodePorts(svc: KObject, current: KObject | undefined): Promise<number[]> {
    const type = spec(svc).type;
    if (type !== "NodePort" && type !== "LoadBalancer") return [];
    const had = new Map<string, number>();
    for (const p of ports(current)) if (p.nodePort) had.set(`${p.port}/${p.protocol ?? "TCP"}`, p.nodePort);
    const claimed: number[] = [];
    try {
      for (const [i, p] of ports(svc).entries()) {
        const kept = had.get(`${p.port}/${p.protocol ?? "TCP"}`);
        if (p.nodePort === undefined && kept !== undefined) p.nodePort = kept;
        if (p.nodePort !== undefined && [...had.values()].includes(p.nodePort)) continue;
        if (p.nodePort !== undefined) {
          const np = this.ctx.nodePorts;
          if (!np.contains(p.nodePort) || !(await np.claim(p.nodePort, owner(svc)))) {
            throw invalid("Service", svc.metadata.name!, [
              {
                field: `spec.ports[${i}].nodePort`,
                reason: "FieldValueInvalid",
                message: `Invalid value: ${p.nodePort}: provided port is already allocated or outside 30000-32767`,
              },
            ]);
          }
        } else p.nodePort = await this.ctx.nodePorts.allocate(owner(svc));
        claimed.push(p.nodePort);
      }
    } catch (err) {
      for (const p of claimed) await this.ctx.nodePorts.release(p);
      throw err;
    }
    return claimed;
  }

  private async releaseNodePorts(svc: KObject | undefined, keep: KObject | undefined): Promise<void> {
    const still = new Set(nodePorts(keep));
    for (const p of nodePorts(svc)) if (!still.has(p)) await this.ctx.nodePorts.release(p);
  }

  /** The cluster IP stays what it was (an update leaving it out keeps it). */
  override prepareForUpdate(svc: KObject, old: KObject): void {
    const cur = spec(old);
    const s = (svc.spec ??= {}) as Obj;
    if (s.clusterIP === undefined || s.clusterIP === "") {
      s.clusterIP = cur.clusterIP;
      if (cur.clusterIPs) s.clusterIPs = cur.clusterIPs;
    } else if (s.clusterIP !== cur.clusterIP) {
      throw clusterIpInvalid(old, String(s.clusterIP), "field is immutable");
    }
    for (const k of ["ipFamilies", "ipFamilyPolicy"])
      if (s[k] === undefined && cur[k] !== undefined) s[k] = cur[k];
  }

  override async beforeUpdate(svc: KObject, old: KObject, mode: UpdateMode): Promise<Rollback> {
    if (mode !== "main") return NOTHING;
    const claimed = await this.assignNodePorts(svc, old);
    return async () => {
      for (const p of claimed) await this.ctx.nodePorts.release(p);
    };
  }

  override afterUpdate(svc: KObject, old: KObject): Promise<void> {
    return this.releaseNodePorts(old, svc);
  }

  override async afterDelete(svc: KObject): Promise<void> {
    const ip = spec(svc).clusterIP;
    if (typeof ip === "string" && ip !== "None" && ip !== "") await this.ctx.serviceIps.release(ip);
    await this.releaseNodePorts(svc, undefined);
  }
}
