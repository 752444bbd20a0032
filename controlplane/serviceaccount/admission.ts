/**
 * The ServiceAccount admission plugin on pod create (plugin/pkg/admission/serviceaccount):
 * `spec.serviceAccountName` defaults to `default`, and unless automountServiceAccountToken is
 * false (the pod's, else the ServiceAccount's) every container gets the projected volume
 * `kube-api-access-XXXXX` at /var/run/secrets/kubernetes.io/serviceaccount: a pod-bound token
 * (3607 s, which lab-agent requests and refreshes), the cluster CA (ConfigMap kube-root-ca.crt)
 * and the namespace. Unlike upstream, a pod whose ServiceAccount or CA ConfigMap is not there yet
 * is admitted unchanged rather than refused (a cluster without the controller manager keeps
 * working as before).
 */
import { randomBytes } from "node:crypto";
import { findResource } from "../../api/resources.ts";
import { ApiError } from "../../api/status.ts";
import type { KObject, Registry } from "../registry.ts";

export const SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount";
export const TOKEN_SECONDS = 3607;
const SERVICE_ACCOUNTS = findResource("", "v1", "serviceaccounts")!;
const CONFIG_MAPS = findResource("", "v1", "configmaps")!;
const ROOT_CA = "kube-root-ca.crt";

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
const arr = (v: unknown): Obj[] => (Array.isArray(v) ? v.map((x) => obj(x) ?? {}) : []);

/** Upstream's suffix: five of utilrand's letters and digits (no vowels). */
function suffix(): string {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  return [...randomBytes(5)].map((b) => alphabet[b % alphabet.length]).join("");
}

async function exists(
  registry: Registry,
  info: typeof CONFIG_MAPS,
  ns: string,
  name: string,
): Promise<KObject | undefined> {
  return registry.get(info, ns, name).catch((err: unknown) => {
    if (err instanceof ApiError && err.code === 404) return undefined;
    throw err;
  });
}

/** The projected volume upstream adds. */
export function apiAccessVolume(name: string): Obj {
  return {
    name,
    projected: {
      defaultMode: 0o644,
      sources: [
        { serviceAccountToken: { expirationSeconds: TOKEN_SECONDS, path: "token" } },
        { configMap: { name: ROOT_CA, items: [{ key: "ca.crt", path: "ca.crt" }] } },
        {
          downwardAPI: {
            items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }],
          },
        },
      ],
    },
  };
}

/** Mutates a pod about to be created; a no-op for a body that is not a pod spec validation would accept. */
export async function admitPodServiceAccount(
  registry: Registry,
  namespace: string | undefined,
  pod: KObject,
): Promise<void> {
  const spec = obj(pod.spec);
  if (!spec || !namespace) return;
  // Mirror pods (static pods of a node) get no service account.
  if (obj(pod.metadata.annotations)?.["kubernetes.io/config.mirror"] !== undefined) return;
  if (spec.serviceAccountName === undefined || spec.serviceAccountName === "")
    spec.serviceAccountName =
      typeof spec.serviceAccount === "string" && spec.serviceAccount ? spec.serviceAccount : "default";
  const saName = spec.serviceAccountName;
  if (typeof saName !== "string") return;
  if (spec.automountServiceAccountToken === false) return;
  const sa = await exists(registry, SERVICE_ACCOUNTS, namespace, saName);
  if (!sa || (spec.automountServiceAccountToken === undefined && sa.automountServiceAccountToken === false))
    return;
  if (!(await exists(registry, CONFIG_MAPS, namespace, ROOT_CA))) return;
  const containers = [...arr(spec.initContainers), ...arr(spec.containers)];
  const mounted = (c: Obj): boolean => arr(c.volumeMounts).some((m) => m.mountPath === SERVICE_ACCOUNT_MOUNT);
  if (containers.every(mounted)) return;
  const name = `kube-api-access-${suffix()}`;
  spec.volumes = [...arr(spec.volumes), apiAccessVolume(name)];
  for (const c of containers)
    if (!mounted(c))
      c.volumeMounts = [...arr(c.volumeMounts), { name, readOnly: true, mountPath: SERVICE_ACCOUNT_MOUNT }];
}
