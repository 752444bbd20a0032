/** Labels the agent puts on CRI sandboxes and containers: the only link between CRI state and pods. */
export const MANAGED_BY = "lab.io/managed-by";
export const MANAGED_BY_AGENT = "lab-agent";
export const POD_UID = "lab.io/pod-uid";
export const POD_NAME = "lab.io/pod-name";
export const POD_NAMESPACE = "lab.io/pod-namespace";
export const CONTAINER_NAME = "lab.io/container-name";
/** Annotation: the pod's terminationGracePeriodSeconds, so an orphan found after a restart still gets its grace. */
export const GRACE_PERIOD = "lab.io/termination-grace-period";
