/** A minimal QMP client: capabilities handshake, then one command. Enough for powerdown and status. */
import { createConnection } from "node:net";

export async function qmpCommand(
  socket: string,
  command: string,
  timeoutMs = 3000,
): Promise<Record<string, unknown> | undefined> {
  return await new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let buf = "";
    let phase: "greeting" | "caps" | "cmd" = "greeting";
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`QMP ${command} on ${socket}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    conn.on("data", (chunk) => {
      buf += chunk.toString("utf8");
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as {
          QMP?: unknown;
          return?: Record<string, unknown>;
          error?: { desc: string };
          event?: string;
        };
        if (msg.event) continue;
        if (phase === "greeting" && msg.QMP) {
          phase = "caps";
          conn.write(JSON.stringify({ execute: "qmp_capabilities" }) + "\n");
        } else if (phase === "caps") {
          phase = "cmd";
          conn.write(JSON.stringify({ execute: command }) + "\n");
        } else if (phase === "cmd") {
          clearTimeout(timer);
          conn.end();
          if (msg.error) reject(new Error(`QMP ${command}: ${msg.error.desc}`));
          else resolve(msg.return);
        }
      }
    });
  });
}
