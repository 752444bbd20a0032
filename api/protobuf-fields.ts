/**
 * The field tables of the kinds api/protobuf.ts decodes: for each message, field number to JSON name,
 * kind and shape, after k8s.io/api's generated.proto. Only the fields kubectl's typed clients send.
 */

export type Kind = "string" | "int" | "bool" | "bytes" | "time" | "intOrString" | "quantity" | Schema;
/** `inline`: a Go embedded struct, whose fields JSON has on the parent (Volume's VolumeSource). */
export type Field = [name: string, kind: Kind, shape?: "repeated" | "map" | "mapBytes" | "mapMsg" | "inline"];
export interface Schema {
  [num: number]: Field;
}

const ownerReference: Schema = {
  1: ["kind", "string"],
  3: ["name", "string"],
  4: ["uid", "string"],
  5: ["apiVersion", "string"],
  6: ["controller", "bool"],
  7: ["blockOwnerDeletion", "bool"],
};
export const objectMeta: Schema = {
  1: ["name", "string"],
  2: ["generateName", "string"],
  3: ["namespace", "string"],
  5: ["uid", "string"],
  6: ["resourceVersion", "string"],
  7: ["generation", "int"],
  8: ["creationTimestamp", "time"],
  11: ["labels", "string", "map"],
  12: ["annotations", "string", "map"],
  13: ["ownerReferences", ownerReference, "repeated"],
  14: ["finalizers", "string", "repeated"],
};
export const labelSelector: Schema = {
  1: ["matchLabels", "string", "map"],
  2: [
    "matchExpressions",
    { 1: ["key", "string"], 2: ["operator", "string"], 3: ["values", "string", "repeated"] },
    "repeated",
  ],
};
const containerPort: Schema = {
  1: ["name", "string"],
  2: ["hostPort", "int"],
  3: ["containerPort", "int"],
  4: ["protocol", "string"],
  5: ["hostIP", "string"],
};
const localRef: Schema = { 1: ["name", "string"] };
const fieldSelector: Schema = { 1: ["apiVersion", "string"], 2: ["fieldPath", "string"] };
const resourceFieldSelector: Schema = {
  1: ["containerName", "string"],
  2: ["resource", "string"],
  3: ["divisor", "quantity"],
};
const keySelector: Schema = { 1: ["ref", localRef, "inline"], 2: ["key", "string"], 3: ["optional", "bool"] };
const envVar: Schema = {
  1: ["name", "string"],
  2: ["value", "string"],
  3: [
    "valueFrom",
    {
      1: ["fieldRef", fieldSelector],
      2: ["resourceFieldRef", resourceFieldSelector],
      3: ["configMapKeyRef", keySelector],
      4: ["secretKeyRef", keySelector],
    },
  ],
};
const envFrom: Schema = {
  1: ["prefix", "string"],
  2: ["configMapRef", { 1: ["ref", localRef, "inline"], 2: ["optional", "bool"] }],
  3: ["secretRef", { 1: ["ref", localRef, "inline"], 2: ["optional", "bool"] }],
};
const volumeMount: Schema = {
  1: ["name", "string"],
  2: ["readOnly", "bool"],
  3: ["mountPath", "string"],
  4: ["subPath", "string"],
  5: ["mountPropagation", "string"],
  6: ["subPathExpr", "string"],
};
const exec: Schema = { 1: ["command", "string", "repeated"] };
const httpGet: Schema = {
  1: ["path", "string"],
  2: ["port", "intOrString"],
  3: ["host", "string"],
  4: ["scheme", "string"],
  5: ["httpHeaders", { 1: ["name", "string"], 2: ["value", "string"] }, "repeated"],
};
const tcpSocket: Schema = { 1: ["port", "intOrString"], 2: ["host", "string"] };
const probe: Schema = {
  1: ["handler", { 1: ["exec", exec], 2: ["httpGet", httpGet], 3: ["tcpSocket", tcpSocket] }, "inline"],
  2: ["initialDelaySeconds", "int"],
  3: ["timeoutSeconds", "int"],
  4: ["periodSeconds", "int"],
  5: ["successThreshold", "int"],
  6: ["failureThreshold", "int"],
  7: ["terminationGracePeriodSeconds", "int"],
};
const lifecycleHandler: Schema = {
  1: ["exec", exec],
  2: ["httpGet", httpGet],
  3: ["tcpSocket", tcpSocket],
  4: ["sleep", { 1: ["seconds", "int"] }],
};
const securityContext: Schema = {
  1: ["capabilities", { 1: ["add", "string", "repeated"], 2: ["drop", "string", "repeated"] }],
  2: ["privileged", "bool"],
  4: ["runAsUser", "int"],
  5: ["runAsNonRoot", "bool"],
  6: ["readOnlyRootFilesystem", "bool"],
  7: ["allowPrivilegeEscalation", "bool"],
  8: ["runAsGroup", "int"],
};
const podSecurityContext: Schema = {
  2: ["runAsUser", "int"],
  3: ["runAsNonRoot", "bool"],
  4: ["supplementalGroups", "int", "repeated"],
  5: ["fsGroup", "int"],
  6: ["runAsGroup", "int"],
};
const keyToPath: Schema = { 1: ["key", "string"], 2: ["path", "string"], 3: ["mode", "int"] };
const volumeSource: Schema = {
  1: ["hostPath", { 1: ["path", "string"], 2: ["type", "string"] }],
  2: ["emptyDir", { 1: ["medium", "string"], 2: ["sizeLimit", "quantity"] }],
  6: [
    "secret",
    {
      1: ["secretName", "string"],
      2: ["items", keyToPath, "repeated"],
      3: ["defaultMode", "int"],
      4: ["optional", "bool"],
    },
  ],
  10: ["persistentVolumeClaim", { 1: ["claimName", "string"], 2: ["readOnly", "bool"] }],
  16: [
    "downwardAPI",
    {
      1: [
        "items",
        {
          1: ["path", "string"],
          2: ["fieldRef", fieldSelector],
          3: ["resourceFieldRef", resourceFieldSelector],
          4: ["mode", "int"],
        },
        "repeated",
      ],
      2: ["defaultMode", "int"],
    },
  ],
  19: [
    "configMap",
    {
      1: ["ref", localRef, "inline"],
      2: ["items", keyToPath, "repeated"],
      3: ["defaultMode", "int"],
      4: ["optional", "bool"],
    },
  ],
};
const toleration: Schema = {
  1: ["key", "string"],
  2: ["operator", "string"],
  3: ["value", "string"],
  4: ["effect", "string"],
  5: ["tolerationSeconds", "int"],
};
const nodeSelectorTerm: Schema = {
  1: [
    "matchExpressions",
    { 1: ["key", "string"], 2: ["operator", "string"], 3: ["values", "string", "repeated"] },
    "repeated",
  ],
  2: [
    "matchFields",
    { 1: ["key", "string"], 2: ["operator", "string"], 3: ["values", "string", "repeated"] },
    "repeated",
  ],
};
const affinity: Schema = {
  1: [
    "nodeAffinity",
    {
      1: [
        "requiredDuringSchedulingIgnoredDuringExecution",
        { 1: ["nodeSelectorTerms", nodeSelectorTerm, "repeated"] },
      ],
      2: [
        "preferredDuringSchedulingIgnoredDuringExecution",
        { 1: ["weight", "int"], 2: ["preference", nodeSelectorTerm] },
        "repeated",
      ],
    },
  ],
};
const resources: Schema = { 1: ["limits", "quantity", "mapMsg"], 2: ["requests", "quantity", "mapMsg"] };
const container: Schema = {
  1: ["name", "string"],
  2: ["image", "string"],
  3: ["command", "string", "repeated"],
  4: ["args", "string", "repeated"],
  5: ["workingDir", "string"],
  6: ["ports", containerPort, "repeated"],
  7: ["env", envVar, "repeated"],
  8: ["resources", resources],
  9: ["volumeMounts", volumeMount, "repeated"],
  10: ["livenessProbe", probe],
  11: ["readinessProbe", probe],
  12: ["lifecycle", { 1: ["postStart", lifecycleHandler], 2: ["preStop", lifecycleHandler] }],
  13: ["terminationMessagePath", "string"],
  15: ["securityContext", securityContext],
  19: ["envFrom", envFrom, "repeated"],
  22: ["startupProbe", probe],
  14: ["imagePullPolicy", "string"],
  16: ["stdin", "bool"],
  17: ["stdinOnce", "bool"],
  18: ["tty", "bool"],
  20: ["terminationMessagePolicy", "string"],
};
const podSpec: Schema = {
  1: ["volumes", { 1: ["name", "string"], 2: ["source", volumeSource, "inline"] }, "repeated"],
  2: ["containers", container, "repeated"],
  3: ["restartPolicy", "string"],
  4: ["terminationGracePeriodSeconds", "int"],
  5: ["activeDeadlineSeconds", "int"],
  6: ["dnsPolicy", "string"],
  7: ["nodeSelector", "string", "map"],
  8: ["serviceAccountName", "string"],
  10: ["nodeName", "string"],
  11: ["hostNetwork", "bool"],
  12: ["hostPID", "bool"],
  13: ["hostIPC", "bool"],
  14: ["securityContext", podSecurityContext],
  15: ["imagePullSecrets", localRef, "repeated"],
  16: ["hostname", "string"],
  17: ["subdomain", "string"],
  18: ["affinity", affinity],
  19: ["schedulerName", "string"],
  20: ["initContainers", container, "repeated"],
  21: ["automountServiceAccountToken", "bool"],
  22: ["tolerations", toleration, "repeated"],
  24: ["priorityClassName", "string"],
  30: ["enableServiceLinks", "bool"],
};
const podTemplateSpec: Schema = { 1: ["metadata", objectMeta], 2: ["spec", podSpec] };
const deploymentStrategy: Schema = {
  1: ["type", "string"],
  2: ["rollingUpdate", { 1: ["maxUnavailable", "intOrString"], 2: ["maxSurge", "intOrString"] }],
};
const servicePort: Schema = {
  1: ["name", "string"],
  2: ["protocol", "string"],
  3: ["port", "int"],
  4: ["targetPort", "intOrString"],
  5: ["nodePort", "int"],
  6: ["appProtocol", "string"],
};

const jobSpec: Schema = {
  1: ["parallelism", "int"],
  2: ["completions", "int"],
  3: ["activeDeadlineSeconds", "int"],
  4: ["selector", labelSelector],
  5: ["manualSelector", "bool"],
  6: ["template", podTemplateSpec],
  7: ["backoffLimit", "int"],
  8: ["ttlSecondsAfterFinished", "int"],
  9: ["completionMode", "string"],
  10: ["suspend", "bool"],
  12: ["backoffLimitPerIndex", "int"],
  13: ["maxFailedIndexes", "int"],
  14: ["podReplacementPolicy", "string"],
  15: ["managedBy", "string"],
};

export const KINDS: Record<string, Schema> = {
  Namespace: {
    1: ["metadata", objectMeta],
    2: ["spec", { 1: ["finalizers", "string", "repeated"] }],
    3: ["status", { 1: ["phase", "string"] }],
  },
  ConfigMap: {
    1: ["metadata", objectMeta],
    2: ["data", "string", "map"],
    3: ["binaryData", "bytes", "mapBytes"],
    4: ["immutable", "bool"],
  },
  Secret: {
    1: ["metadata", objectMeta],
    2: ["data", "bytes", "mapBytes"],
    3: ["type", "string"],
    4: ["stringData", "string", "map"],
    5: ["immutable", "bool"],
  },
  ServiceAccount: {
    1: ["metadata", objectMeta],
    3: ["imagePullSecrets", { 1: ["name", "string"] }, "repeated"],
    4: ["automountServiceAccountToken", "bool"],
  },
  Service: {
    1: ["metadata", objectMeta],
    2: [
      "spec",
      {
        1: ["ports", servicePort, "repeated"],
        2: ["selector", "string", "map"],
        3: ["clusterIP", "string"],
        4: ["type", "string"],
        5: ["externalIPs", "string", "repeated"],
        7: ["sessionAffinity", "string"],
        10: ["externalName", "string"],
        18: ["clusterIPs", "string", "repeated"],
      },
    ],
    3: ["status", {}],
  },
  Deployment: {
    1: ["metadata", objectMeta],
    2: [
      "spec",
      {
        1: ["replicas", "int"],
        2: ["selector", labelSelector],
        3: ["template", podTemplateSpec],
        4: ["strategy", deploymentStrategy],
        5: ["minReadySeconds", "int"],
        6: ["revisionHistoryLimit", "int"],
        7: ["paused", "bool"],
        9: ["progressDeadlineSeconds", "int"],
      },
    ],
    3: ["status", {}],
  },
  Job: { 1: ["metadata", objectMeta], 2: ["spec", jobSpec], 3: ["status", {}] },
  CronJob: {
    1: ["metadata", objectMeta],
    2: [
      "spec",
      {
        1: ["schedule", "string"],
        2: ["startingDeadlineSeconds", "int"],
        3: ["concurrencyPolicy", "string"],
        4: ["suspend", "bool"],
        5: ["jobTemplate", { 1: ["metadata", objectMeta], 2: ["spec", jobSpec] }],
        6: ["successfulJobsHistoryLimit", "int"],
        7: ["failedJobsHistoryLimit", "int"],
        8: ["timeZone", "string"],
      },
    ],
    3: ["status", {}],
  },
  // autoscaling/v1, as `kubectl autoscale` posts it
  HorizontalPodAutoscaler: {
    1: ["metadata", objectMeta],
    2: [
      "spec",
      {
        1: ["scaleTargetRef", { 1: ["kind", "string"], 2: ["name", "string"], 3: ["apiVersion", "string"] }],
        2: ["minReplicas", "int"],
        3: ["maxReplicas", "int"],
        4: ["targetCPUUtilizationPercentage", "int"],
      },
    ],
    3: ["status", {}],
  },
};

export const API_VERSIONS: Record<string, string> = {
  Deployment: "apps/v1",
  Job: "batch/v1",
  CronJob: "batch/v1",
  HorizontalPodAutoscaler: "autoscaling/v1",
};

/** Pointer fields where an explicit zero means something. */
export const KEEP_ZERO = new Set([
  "replicas",
  "terminationGracePeriodSeconds",
  "intVal",
  "backoffLimit",
  "completions",
  "parallelism",
  "activeDeadlineSeconds",
  "ttlSecondsAfterFinished",
  "startingDeadlineSeconds",
  "successfulJobsHistoryLimit",
  "failedJobsHistoryLimit",
  "runAsUser",
  "runAsGroup",
  "fsGroup",
  "defaultMode",
  "mode",
]);
