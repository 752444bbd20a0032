/**
 * The lab used when no -f is given and there is no ./lab.yaml. Sized for a 2-core, 24 GiB machine
 * under TCG: 5 VMs (3 × 2 GiB + 2 × 1.5 GiB guests, each QEMU with a 256 MiB translation cache) take
 * ~4.5 GB RSS once up, at most ~10.5 GB if every guest filled its memory: under half the machine. It is the
 * same text as examples/default.yaml (a test keeps them equal).
 */
export const DEFAULT_LAB_YAML = `# The default lab: 3 HA masters (etcd + lab-server) and 2 workers as QEMU VMs.
apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: default
spec:
  provider:
    type: qemu
    accel: auto # KVM when usable, else TCG (software emulation)
  image: debian-12
  resources:
    cpus: 1
    memory: 2Gi
    disk: 10Gi
  masters:
    count: 3
  workers:
    count: 2
    resources:
      memory: 1536Mi
  cluster:
    podCIDR: 10.244.0.0/16
    serviceCIDR: 10.96.0.0/16
    domain: cluster.local
`;
