/**
 * WebSocket channels (v5.channel.k8s.io / v4) on the client side, the runtime's SPDY
 * remote-command protocol (v4.channel.k8s.io) on the other: the translation kube-apiserver does
 * for kubectl 1.30+. SPDY keeps what the runtime's own v4 WebSocket lacks: the end of stdin (v5's
 * CLOSE frame becomes a FIN on the stdin stream), which `cat`, `tar x` (kubectl cp) wait for.
 */
import type { WebSocket } from "ws";
import { CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT, frame } from "./exec-protocol.ts";
import type { RemoteCommandIo, SpdyClientSession } from "./spdy.ts";

/** The SPDY protocol asked of the runtime for exec and attach. */
export const SPDY_REMOTE_COMMAND = "v4.channel.k8s.io";

export function translateRemoteCommand(client: WebSocket, s: SpdyClientSession, io: RemoteCommandIo): void {
  const v5 = client.protocol === "v5.channel.k8s.io";
  const send = (ch: number, d: Buffer | string): void => {
    if (client.readyState === client.OPEN) client.send(frame(ch, d));
  };
  let open = 0;
  let errorDone = false;
  const errorData: Buffer[] = [];
  const flushError = (): void => {
    if (errorData.length) send(ERROR, Buffer.concat(errorData.splice(0)));
  };
  const done = (): void => {
    if (errorDone && open === 0 && client.readyState === client.OPEN) client.close(1000);
  };
  // the order client-go uses: error, stdin, stdout, stderr, resize
  s.open(
    { streamType: "error" },
    {
      data: (d) => errorData.push(d),
      end: () => {
        flushError();
        errorDone = true;
        done();
      },
    },
  );
  const stdin = io.stdin ? s.open({ streamType: "stdin" }) : undefined;
  const output = (type: string, ch: number): void => {
    open++;
    s.open(
      { streamType: type },
      {
        data: (d) => send(ch, d),
        end: () => {
          open--;
          done();
        },
      },
    );
  };
  if (io.stdout) output("stdout", STDOUT);
  if (io.stderr && !io.tty) output("stderr", STDERR);
  const resize = io.tty ? s.open({ streamType: "resize" }) : undefined;

  client.on("message", (data: Buffer, isBinary: boolean) => {
    const buf = isBinary ? data : Buffer.from(data);
    if (buf.length === 0) return;
    if (buf[0] === STDIN && stdin !== undefined) s.write(stdin, buf.subarray(1));
    else if (buf[0] === RESIZE && resize !== undefined) s.write(resize, buf.subarray(1));
    else if (v5 && buf[0] === CLOSE && buf[1] === STDIN && stdin !== undefined) s.finish(stdin);
  });
  client.on("close", () => s.close());
  client.on("error", () => s.close());
  s.onClose(() => {
    flushError();
    if (client.readyState === client.OPEN) client.close(1000);
  });
}
