/**
 * The agent's API client: one LabClient per apiserver address (VIP first, then every master),
 * same client certificate. A call that cannot reach a server (connection error, timeout, 5xx) is
 * retried on the next one, and the one that answered becomes the preferred server, so losing the
 * VIP or a master costs one failed request, not an outage.
 */
import {
  ApiStatusError,
  LabClient,
  type ClientConfig,
  type DeleteOptions,
  type ListOptions,
  type ObjectList,
  type PatchType,
  type Plural,
  type ResourceTypes,
  type WatchEvent,
  type WatchOptions,
} from "../../api/client.ts";

/** Every apiserver address failed; the message names each one and why. */
export class NoServerAnswered extends Error {
  constructor(readonly failures: string[]) {
    super(`no API server answered (${failures.join("; ")})`);
    this.name = "NoServerAnswered";
  }
}

/** Errors worth trying another server for: the server is unreachable or unwell, not "no". */
export function isServerFailure(err: unknown): boolean {
  if (err instanceof ApiStatusError) return err.code >= 500 || err.code === 429;
  return true;
}

export class FailoverClient {
  private readonly clients: LabClient[];
  private preferred = 0;

  constructor(servers: string[], creds: Omit<ClientConfig, "server">) {
    if (servers.length === 0) throw new Error("no API server addresses");
    this.clients = servers.map((server) => new LabClient({ timeoutMs: 30_000, ...creds, server }));
    this.servers = servers;
  }

  readonly servers: string[];

  /** The server the next call goes to first. */
  get current(): string {
    return this.servers[this.preferred]!;
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  private async call<T>(fn: (c: LabClient) => Promise<T>): Promise<T> {
    const failures: string[] = [];
    let last: unknown;
    for (let i = 0; i < this.clients.length; i++) {
      const idx = (this.preferred + i) % this.clients.length;
      try {
        const r = await fn(this.clients[idx]!);
        this.preferred = idx;
        return r;
      } catch (err) {
        if (!isServerFailure(err)) {
          this.preferred = idx;
          throw err;
        }
        last = err;
        failures.push(`${this.servers[idx]}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    // Every server failed: say what each one did, not only the last (that the VIP is unreachable
    // says little when the masters behind it time out).
    throw this.clients.length === 1 ? last : new NoServerAnswered(failures);
  }

  get<P extends Plural>(plural: P, name: string, namespace?: string): Promise<ResourceTypes[P]> {
    return this.call((c) => c.get(plural, name, namespace));
  }

  list<P extends Plural>(plural: P, opts: ListOptions = {}): Promise<ObjectList<ResourceTypes[P]>> {
    return this.call((c) => c.list(plural, opts));
  }

  create<P extends Plural>(plural: P, obj: ResourceTypes[P], namespace?: string): Promise<ResourceTypes[P]> {
    return this.call((c) => c.create(plural, obj, namespace));
  }

  update<P extends Plural>(plural: P, obj: ResourceTypes[P]): Promise<ResourceTypes[P]> {
    return this.call((c) => c.update(plural, obj));
  }

  updateStatus<P extends Plural>(plural: P, obj: ResourceTypes[P]): Promise<ResourceTypes[P]> {
    return this.call((c) => c.updateStatus(plural, obj));
  }

  patch<P extends Plural>(
    plural: P,
    name: string,
    patch: unknown,
    opts: { namespace?: string; type?: PatchType; subresource?: "status" | "scale" } = {},
  ): Promise<ResourceTypes[P]> {
    return this.call((c) => c.patch(plural, name, patch, opts));
  }

  delete<P extends Plural>(plural: P, name: string, namespace?: string, opts: DeleteOptions = {}) {
    return this.call((c) => c.delete(plural, name, namespace, opts));
  }

  createToken(...args: Parameters<LabClient["createToken"]>): ReturnType<LabClient["createToken"]> {
    return this.call((c) => c.createToken(...args));
  }

  /** A watch on the preferred server; when it breaks, the next watch starts on the next server. */
  async *watch<P extends Plural>(
    plural: P,
    opts: WatchOptions = {},
  ): AsyncGenerator<WatchEvent<ResourceTypes[P]>> {
    const idx = this.preferred;
    try {
      yield* this.clients[idx]!.watch(plural, opts);
    } catch (err) {
      if (isServerFailure(err) && this.preferred === idx) this.preferred = (idx + 1) % this.clients.length;
      throw err;
    }
  }
}
