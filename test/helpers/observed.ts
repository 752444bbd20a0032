import type { ObservedContainer } from "../../node/observed.ts";

/** A running `app` container of sandbox `s1` as the agent observes it; `over` changes what a test needs. */
export const observedContainer = (over: Partial<ObservedContainer> = {}): ObservedContainer => ({
  id: "c0",
  sandboxId: "s1",
  name: "app",
  attempt: 0,
  state: "CONTAINER_RUNNING",
  createdAt: 1000,
  startedAt: 1100,
  finishedAt: 0,
  exitCode: 0,
  reason: "",
  message: "",
  image: "lab/sample",
  imageRef: "sha256:x",
  ...over,
});
