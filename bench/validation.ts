/**
 * What validating a write costs: validateObject on a running pod as the kubelet's status writes
 * carry it, side by side with a structuredClone of the same pod (which every write does already).
 * Run: npx tsx bench/validation.ts
 */
import { applyDefaults } from "../api/defaults.ts";
import { validateObject } from "../api/validation.ts";

const pod: Record<string, unknown> = {
  metadata: {
    name: "web-6cf4fffd89-x2x7q",
    namespace: "default",
    labels: { app: "web", "pod-template-hash": "6cf4fffd89" },
    annotations: { "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z" },
    ownerReferences: [
      { apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-6cf4fffd89", uid: "u1", controller: true },
    ],
  },
  spec: {
    nodeName: "worker-1",
    containers: [
      {
        name: "web",
        image: "nginx:1.27",
        ports: [{ containerPort: 80 }],
        env: [{ name: "A", value: "1" }],
        resources: { limits: { cpu: "500m", memory: "128Mi" } },
        readinessProbe: { httpGet: { path: "/", port: 80 } },
      },
    ],
  },
  status: {
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
        state: { running: { startedAt: "2026-01-01T00:00:00Z" } },
      },
    ],
  },
};
applyDefaults("Pod", pod);

function perOp(n: number, f: () => unknown): number {
  for (let i = 0; i < n / 10; i++) f(); // warm up
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - t0) / n) * 1000;
}

const N = Number(process.env["N"] ?? 20000);
const validate = perOp(N, () => validateObject("Pod", pod, true));
const clone = perOp(N, () => structuredClone(pod));
console.log(`validateObject(Pod)      ${validate.toFixed(1)} us/op`);
console.log(`structuredClone(Pod)     ${clone.toFixed(1)} us/op`);
console.log(`validate / clone         ${(validate / clone).toFixed(2)}x`);
