import { describe, expect, it } from "vitest";
import type { ContainerStatus } from "../../../node/cri/types.ts";
import { statusStillValid } from "../../../node/observed.ts";

const NOW = 1_800_000_000_000;
const status = (state: ContainerStatus["state"], finishedAtMs = 0): ContainerStatus => ({
  id: "c1",
  metadata: { name: "web", attempt: 0 },
  state,
  createdAt: (NOW - 60_000) * 1e6,
  startedAt: (NOW - 59_000) * 1e6,
  finishedAt: finishedAtMs * 1e6,
  exitCode: state === "CONTAINER_EXITED" ? 1 : 0,
  image: { image: "x" },
  imageRef: "x",
  reason: "",
  message: "",
  labels: {},
  annotations: {},
  logPath: "",
});

describe("statusStillValid (the agent skips ContainerStatus calls while it holds)", () => {
  it("keeps a running container's status while the listing still says running", () => {
    expect(statusStillValid(status("CONTAINER_RUNNING"), "CONTAINER_RUNNING", NOW)).toBe(true);
  });

  it("asks again when the listed state moved on (the container exited or started)", () => {
    expect(statusStillValid(status("CONTAINER_RUNNING"), "CONTAINER_EXITED", NOW)).toBe(false);
    expect(statusStillValid(status("CONTAINER_CREATED"), "CONTAINER_CREATED", NOW)).toBe(false);
    expect(statusStillValid(status("CONTAINER_CREATED"), "CONTAINER_RUNNING", NOW)).toBe(false);
  });

  it("asks again for a freshly exited container (containerd may still add OOMKilled), not for an old one", () => {
    expect(statusStillValid(status("CONTAINER_EXITED", NOW - 2_000), "CONTAINER_EXITED", NOW)).toBe(false);
    expect(statusStillValid(status("CONTAINER_EXITED", NOW - 30_000), "CONTAINER_EXITED", NOW)).toBe(true);
  });
});
