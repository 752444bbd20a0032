import { defineConfig } from "vitest/config";

// Three suites: unit (pure, no processes), integration (real etcd, sshd, containerd in temp dirs and
// network namespaces), e2e (real VMs). `npm test` runs the first two.
export default defineConfig({
  test: {
    // Integration and e2e files start real daemons; on 2 cores they run one file at a time.
    fileParallelism: false,
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], testTimeout: 20_000 } },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 1_800_000,
          hookTimeout: 1_800_000,
        },
      },
    ],
  },
});
