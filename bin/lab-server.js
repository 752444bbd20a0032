#!/usr/bin/env node
// Entry point of the `lab-server` command (the API server, scheduler and controllers): runs the
// TypeScript sources through tsx's loader, like bin/lab.js.
import { register } from "tsx/esm/api";
import { exitWithLauncher } from "./launcher.js";

exitWithLauncher();
register();
const { main } = await import("../controlplane/main.ts");
await main(process.argv);
