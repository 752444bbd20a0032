import type { Server } from "node:net";

/** Listens on `host:port` (0: any free port); rejects if that fails, else resolves with the bound port. */
export async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return typeof addr === "object" && addr ? addr.port : port;
}
