/** The OpenAPI model (client-node's name) behind each served kind. */
export const KIND_MODELS: Record<string, string> = {
  Namespace: "V1Namespace",
  Node: "V1Node",
  Pod: "V1Pod",
  Service: "V1Service",
  Endpoints: "V1Endpoints",
  ConfigMap: "V1ConfigMap",
  Secret: "V1Secret",
  Event: "CoreV1Event",
  ServiceAccount: "V1ServiceAccount",
  Deployment: "V1Deployment",
  ReplicaSet: "V1ReplicaSet",
  Lease: "V1Lease",
  PodDisruptionBudget: "V1PodDisruptionBudget",
  HorizontalPodAutoscaler: "V2HorizontalPodAutoscaler",
};
