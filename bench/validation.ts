/**
 * What validating a write costs: validateObject on a running pod as the kubelet's status writes
 * carry it, side by side with a structuredClone of the same pod (which every write does already).
 * Run: npx tsx bench/validation.ts
 */
import { applyDefaults } from "../api/defaults.ts";
import { validateObject } from "../api/validation.ts";
import { perOp, runningStatus, webPod } from "./fixtures.ts";

const pod = webPod(runningStatus({ startedAt: "2026-01-01T00:00:00Z" }));
pod.metadata.annotations = { "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z" };
applyDefaults("Pod", pod);

const N = Number(process.env["N"] ?? 20000);
const validate = perOp(N, () => validateObject("Pod", pod, true));
const clone = perOp(N, () => structuredClone(pod));
console.log(`validateObject(Pod)      ${validate.toFixed(1)} us/op`);
console.log(`structuredClone(Pod)     ${clone.toFixed(1)} us/op`);
console.log(`validate / clone         ${(validate / clone).toFixed(2)}x`);
