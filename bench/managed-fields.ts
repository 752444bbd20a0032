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
import { perOp, runningStatus, WEB_CONTAINER, webPod } from "./fixtures.ts";

const podInfo = RESOURCES.find((r) => r.kind === "Pod")!;
const deployInfo = RESOURCES.find((r) => r.kind === "Deployment")!;

const pod = webPod({ phase: "Pending" });
applyDefaults("Pod", pod);
pod.metadata.managedFields = managedFieldsAfterWrite(podInfo, undefined, pod, {
  operation: "Update",
  manager: "kube-controller-manager",
});
const running = structuredClone(pod);
running.status = runningStatus();

const deployment = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web", labels: { app: "web" } },
  spec: {
    replicas: 3,
    selector: { matchLabels: { app: "web" } },
    template: { metadata: { labels: { app: "web" } }, spec: { containers: [WEB_CONTAINER] } },
  },
} as KObject;
const live = applyConfig(deployInfo, undefined, deployment, { manager: "kubectl" }, false);

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
