#!/usr/bin/env node
// Entry point of the `lab-agent` command (the node agent, or with --hollow simulated nodes): runs
// the TypeScript sources through tsx's loader, like bin/lab.js.
import { register } from "tsx/esm/api";
import { exitWithLauncher } from "./launcher.js";

exitWithLauncher();
register();
const { main } = await import("../node/main.ts");
await main(process.argv);
