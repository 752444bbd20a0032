import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { CRI_PROTO } from "./api-proto.ts";
import type {
  Container,
  ContainerConfig,
  ContainerStatus,
  ExecSyncResult,
  Image,
  PodSandbox,
  PodSandboxConfig,
  PodSandboxStatus,
} from "./types.ts";

/** One container's figures as CRI reports them (nanosecond timestamps; absent values are null). */
export interface CriContainerStats {
  attributes: { id: string; labels: Record<string, string> } | null;
  cpu: { timestamp: number; usageCoreNanoSeconds: { value: number } | null } | null;
  memory: { timestamp: number; workingSetBytes: { value: number } | null } | null;
}

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type Stub = Record<
  string,
  (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<unknown>) => void
>;

let loaded: grpc.GrpcObject | undefined;
function definitions(): grpc.GrpcObject {
  // enums as names and int64 as numbers: nanosecond timestamps fit in a double well enough for status
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.fromJSON(protobuf.parse(CRI_PROTO, { keepCase: false }).root.toJSON(), {
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  );
  return loaded;
}

/** A client for a CRI v1 runtime (containerd) on a unix socket. Every call has a deadline. */
export class CriClient {
  private readonly runtime: Stub;
  private readonly images: Stub;

  constructor(
    readonly socket: string,
    private readonly timeoutMs = 30_000,
  ) {
    const v1 = (definitions()["runtime"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject;
    const Runtime = v1["RuntimeService"] as grpc.ServiceClientConstructor;
    const Images = v1["ImageService"] as grpc.ServiceClientConstructor;
    const target = `unix://${socket}`;
    const creds = grpc.credentials.createInsecure();
    this.runtime = new Runtime(target, creds) as unknown as Stub;
    // one channel for both services
    this.images = new Images(target, creds, {
      channelOverride: (this.runtime as unknown as grpc.Client).getChannel(),
    }) as unknown as Stub;
  }

  private call<T>(stub: Stub, method: string, req: object, timeoutMs = this.timeoutMs): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = stub[method]!;
      fn.call(stub, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res as T),
      );
    });
  }

  close(): void {
    (this.runtime as unknown as grpc.Client).close();
  }

  version(): Promise<{ runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }> {
    return this.call(this.runtime, "Version", { version: "v1" });
  }

  async status(): Promise<{ type: string; status: boolean; reason: string; message: string }[]> {
    const res = await this.call<{ status?: { conditions: [] } }>(this.runtime, "Status", {});
    return res.status?.conditions ?? [];
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    const res = await this.call<{ podSandboxId: string }>(this.runtime, "RunPodSandbox", { config });
    return res.podSandboxId;
  }

  async stopPodSandbox(podSandboxId: string): Promise<void> {
    await this.call(this.runtime, "StopPodSandbox", { podSandboxId });
  }

  async removePodSandbox(podSandboxId: string): Promise<void> {
    await this.call(this.runtime, "RemovePodSandbox", { podSandboxId });
  }

  async podSandboxStatus(podSandboxId: string): Promise<PodSandboxStatus> {
    const res = await this.call<{ status: PodSandboxStatus }>(this.runtime, "PodSandboxStatus", {
      podSandboxId,
    });
    return res.status;
  }

  async listPodSandbox(labelSelector: Record<string, string> = {}): Promise<PodSandbox[]> {
    const res = await this.call<{ items: PodSandbox[] }>(this.runtime, "ListPodSandbox", {
      filter: { labelSelector },
    });
    return res.items;
  }

  async createContainer(
    podSandboxId: string,
    config: ContainerConfig,
    sandboxConfig: PodSandboxConfig,
  ): Promise<string> {
    const res = await this.call<{ containerId: string }>(this.runtime, "CreateContainer", {
      podSandboxId,
      config,
      sandboxConfig,
    });
    return res.containerId;
  }

  async startContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, "StartContainer", { containerId });
  }

  /** Stops with SIGTERM, then SIGKILL after `timeoutSeconds`. */
  async stopContainer(containerId: string, timeoutSeconds: number): Promise<void> {
    await this.call(
      this.runtime,
      "StopContainer",
      { containerId, timeout: timeoutSeconds },
      (timeoutSeconds + 30) * 1000,
    );
  }

  async removeContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, "RemoveContainer", { containerId });
  }

  async listContainers(
    filter: { podSandboxId?: string; labelSelector?: Record<string, string> } = {},
  ): Promise<Container[]> {
    const res = await this.call<{ containers: Container[] }>(this.runtime, "ListContainers", { filter });
    return res.containers;
  }

  /** Cumulative CPU and the memory working set of the runtime's containers (CRI ListContainerStats). */
  async listContainerStats(labelSelector: Record<string, string> = {}): Promise<CriContainerStats[]> {
    const res = await this.call<{ stats: CriContainerStats[] }>(this.runtime, "ListContainerStats", {
      filter: { labelSelector },
    });
    return res.stats ?? [];
  }

  async containerStatus(containerId: string): Promise<ContainerStatus> {
    const res = await this.call<{ status: ContainerStatus }>(this.runtime, "ContainerStatus", {
      containerId,
    });
    return res.status;
  }

  execSync(containerId: string, cmd: string[], timeoutSeconds: number): Promise<ExecSyncResult> {
    return this.call(
      this.runtime,
      "ExecSync",
      { containerId, cmd, timeout: timeoutSeconds },
      (timeoutSeconds + 10) * 1000,
    );
  }

  /** A streaming-server URL for an interactive exec (one use, short-lived). */
  async exec(
    containerId: string,
    cmd: string[],
    io: { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean },
  ): Promise<string> {
    const res = await this.call<{ url: string }>(this.runtime, "Exec", { containerId, cmd, ...io });
    return res.url;
  }

  /** A streaming-server URL attached to the container's own stdio. */
  async attach(
    containerId: string,
    io: { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean },
  ): Promise<string> {
    const res = await this.call<{ url: string }>(this.runtime, "Attach", { containerId, ...io });
    return res.url;
  }

  /** A streaming-server URL forwarding to ports in the sandbox's network namespace. */
  async portForward(podSandboxId: string, ports: number[]): Promise<string> {
    const res = await this.call<{ url: string }>(this.runtime, "PortForward", { podSandboxId, port: ports });
    return res.url;
  }

  /** The image if the runtime has it, else undefined. */
  async imageStatus(image: string): Promise<Image | undefined> {
    const res = await this.call<{ image: Image | null }>(this.images, "ImageStatus", { image: { image } });
    return res.image ?? undefined;
  }

  async listImages(): Promise<Image[]> {
    const res = await this.call<{ images: Image[] }>(this.images, "ListImages", {});
    return res.images;
  }

  async pullImage(image: string): Promise<string> {
    const res = await this.call<{ imageRef: string }>(
      this.images,
      "PullImage",
      { image: { image } },
      300_000,
    );
    return res.imageRef;
  }
}

/** gRPC NOT_FOUND: the runtime no longer knows the object (already removed). */
export function isNotFound(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: number }).code === grpc.status.NOT_FOUND;
}
