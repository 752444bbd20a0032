/**
 * What managedFields cost a write: a kubelet-style status update of a running pod recorded as an
 * Update (controlplane/registry/apply), and a server-side apply of a Deployment over itself, side by
 * side with a structuredClone of the same object (which every write does already).
 * Run: npx tsx bench/managed-fields.ts
 */
import { applyDefaults } from "../api/defaults.ts";
import { RESOURCES } from "../api/resources.ts";
import { applyConfig, managedFieldsAfterWrite } from "../controlplane/registry/apply/index.ts";
import type { KObject } from "../controlplane/registry/types.ts";

const podInfo = RESOURCES.find((r) => r.kind === "Pod")!;
const deployInfo = RESOURCES.find((r) => r.kind === "Deployment")!;

const container = {
  name: "web",
  image: "nginx:1.27",
  ports: [{ containerPort: 80 }],
  env: [{ name: "A", value: "1" }],
  resources: { limits: { cpu: "500m", memory: "128Mi" } },
  readinessProbe: { httpGet: { path: "/", port: 80 } },
};
const pod = {
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
  spec: { nodeName: "worker-1", containers: [container] },
  status: { phase: "Pending" },
} as KObject;
applyDefaults("Pod", pod);
pod.metadata.managedFields = managedFieldsAfterWrite(podInfo, undefined, pod, {
  operation: "Update",
  manager: "kube-controller-manager",
});
const running = structuredClone(pod);
running.status = {
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
      state: { running: {} },
    },
  ],
};

const deployment = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web", labels: { app: "web" } },
  spec: {
    replicas: 3,
    selector: { matchLabels: { app: "web" } },
    template: { metadata: { labels: { app: "web" } }, spec: { containers: [container] } },
  },
} as KObject;
const live = applyConfig(deployInfo, undefined, deployment, { manager: "kubectl" }, false);

function perOp(n: number, f: () => unknown): number {
  for (let i = 0; i < n / 10; i++) f(); // warm up
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - t0) / n) * 1000;
}

const N = Number(process.env["N"] ?? 20000);
const update = perOp(N, () =>
  managedFieldsAfterWrite(podInfo, pod, running, {
    operation: "Update",
    manager: "kubelet",
    subresource: "status",
  }),
);
const apply = perOp(N, () => applyConfig(deployInfo, live, deployment, { manager: "kubectl" }, false));
const clonePod = perOp(N, () => structuredClone(running));
const cloneDeploy = perOp(N, () => structuredClone(live));
console.log(`managedFields of a pod status update  ${update.toFixed(1)} us/op`);
console.log(`structuredClone(Pod)                  ${clonePod.toFixed(1)} us/op`);
console.log(`update / clone                        ${(update / clonePod).toFixed(2)}x`);
console.log(`server-side apply of a Deployment     ${apply.toFixed(1)} us/op`);
console.log(`structuredClone(Deployment)           ${cloneDeploy.toFixed(1)} us/op`);
console.log(`apply / clone                         ${(apply / cloneDeploy).toFixed(2)}x`);
