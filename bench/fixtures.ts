/** What the write-path benches measure on: a Deployment's web pod as the kubelet reports it, and a per-op timer. */
import type { KObject } from "../controlplane/registry/types.ts";

export const WEB_CONTAINER = {
  name: "web",
  image: "nginx:1.27",
  ports: [{ containerPort: 80 }],
  env: [{ name: "A", value: "1" }],
  resources: { limits: { cpu: "500m", memory: "128Mi" } },
  readinessProbe: { httpGet: { path: "/", port: 80 } },
};

/** A pod of ReplicaSet web-6cf4fffd89 on worker-1 with `status`. */
export const webPod = (status: Record<string, unknown>): KObject => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: "web-6cf4fffd89-x2x7q",
    namespace: "default",
    labels: { app: "web", "pod-template-hash": "6cf4fffd89" },
    ownerReferences: [
      { apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-6cf4fffd89", uid: "u1", controller: true },
    ],
  },
  spec: { nodeName: "worker-1", containers: [structuredClone(WEB_CONTAINER)] },
  status,
});

/** The status of the pod once its container runs and is ready (`running`: its state.running). */
export const runningStatus = (running: Record<string, unknown> = {}): Record<string, unknown> => ({
  phase: "Running",
  podIP: "10.244.1.5",
  conditions: [{ type: "Ready", status: "True", lastTransitionTime: "2026-01-01T00:00:00Z" }],
  containerStatuses: [
    {
      name: "web",
      ready: true,
      restartCount: 0,
      image: "nginx:1.27",
      imageID: "sha256:x",
      state: { running },
    },
  ],
});

/** Microseconds per call of `f`, over `n` calls after a warm-up of n/10. */
export function perOp(n: number, f: () => unknown): number {
  for (let i = 0; i < n / 10; i++) f(); // warm up
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - t0) / n) * 1000;
}
