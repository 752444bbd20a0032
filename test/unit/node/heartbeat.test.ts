import type { V1Lease } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { ApiStatusError } from "../../../api/client.ts";
import type { FailoverClient } from "../../../node/api/failover.ts";
import type { CriClient } from "../../../node/cri/client.ts";
import { Heartbeat } from "../../../node/heartbeat.ts";

/** An API that holds one Lease with a resourceVersion, like lab-server's compare-and-swap. */
function leaseApi() {
  let stored: V1Lease | undefined;
  let rv = 1;
  const calls: string[] = [];
  const client = {
    get(plural: string, name: string) {
      calls.push(`get ${plural}/${name}`);
      if (plural === "leases" && stored) return Promise.resolve(structuredClone(stored));
      return Promise.reject(new ApiStatusError(404, "NotFound", undefined));
    },
    create(plural: string, obj: V1Lease) {
      calls.push(`create ${plural}`);
      stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++rv) } };
      return Promise.resolve(structuredClone(stored));
    },
    update(plural: string, obj: V1Lease) {
      calls.push(`update ${plural}`);
      if (obj.metadata?.resourceVersion !== stored?.metadata?.resourceVersion)
        return Promise.reject(new ApiStatusError(409, "Conflict", undefined));
      stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++rv) } };
      return Promise.resolve(structuredClone(stored));
    },
    updateStatus(_plural: string, obj: object) {
      return Promise.resolve(obj);
    },
  };
  return {
    client: client as unknown as FailoverClient,
    calls,
    /** Another write to the lease, e.g. our own earlier renewal that landed after we gave up on it. */
    bump: () => (stored!.metadata!.resourceVersion = String(++rv)),
    renewTime: () => stored?.spec?.renewTime,
  };
}

const cri = {
  status: () =>
    Promise.resolve([
      { type: "RuntimeReady", status: true },
      { type: "NetworkReady", status: true },
    ]),
} as unknown as CriClient;

const registration = {
  nodeName: "worker-1",
  nodeIP: "10.0.0.21",
  labels: {},
  taints: [],
  capacity: { cpu: "1", memory: "1Gi", pods: "110" },
  nodeInfo: {} as never,
};

describe("the node heartbeat", () => {
  it("renews its Lease again at once after a conflict, instead of a period later", async () => {
    const api = leaseApi();
    const errors: string[] = [];
    const hb = new Heartbeat({
      client: api.client,
      cri,
      registration,
      onError: (what, err) => errors.push(`${what}: ${(err as Error).message}`),
    });
    await hb.beat(); // creates the lease
    const first = api.renewTime();
    api.bump();
    api.calls.length = 0;
    await new Promise((r) => setTimeout(r, 5));
    await hb.beat();
    expect(errors).toEqual([]);
    expect(api.calls).toEqual(["update leases", "get leases/worker-1", "update leases"]);
    expect(api.renewTime()).not.toEqual(first);
  });
});
