/**
 * Whether etcd answers, known before anyone asks. keepalived asks the local lab-server every 2 s;
 * when every check waited for its own etcd round trip, a loaded TCG master (etcd a quorum read away
 * on two other starved VMs) answered after the check had given up, no master ever held the VIP, and
 * the late answers piled up in lab-server. A probe loop keeps the verdict instead: one round trip at
 * a time, and the health endpoint answers from memory.
 */
export interface Probe {
  revision(): Promise<number>;
}

export interface EtcdReadinessOptions {
  /** Time between the end of one probe and the start of the next. */
  intervalMs?: number;
  /** A probe that takes longer counts as failed (and a new one starts). */
  timeoutMs?: number;
  /** Ready while the last successful probe is at most this old. */
  staleMs?: number;
  now?: () => number;
}

export class EtcdReadiness {
  private lastOk = -Infinity;
  private lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly staleMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: Probe,
    opts: EtcdReadinessOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 2000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.staleMs = opts.staleMs ?? 12_000;
    this.now = opts.now ?? Date.now;
  }

  /** Starts probing; the first probe runs at once. Resolves after that first probe. */
  start(): Promise<void> {
    this.stopped = false;
    return this.loop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Why not ready, or undefined when etcd answered recently. */
  notReady(): string | undefined {
    const age = this.now() - this.lastOk;
    if (age <= this.staleMs) return undefined;
    const since = Number.isFinite(age) ? `for ${Math.round(age / 1000)} s` : "yet";
    return `etcd has not answered ${since}${this.lastError ? `: ${this.lastError}` : ""}`;
  }

  /** One probe now; records and returns the verdict. */
  async probe(): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`etcd did not answer within ${this.timeoutMs / 1000} s`)),
        this.timeoutMs,
      );
      timer.unref();
    });
    try {
      await Promise.race([this.store.revision(), timeout]);
      this.lastOk = this.now();
    } catch (err) {
      this.lastError = (err as Error).message;
    } finally {
      clearTimeout(timer);
    }
    return this.notReady();
  }

  private async loop(): Promise<void> {
    await this.probe();
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.loop(), this.intervalMs);
    this.timer.unref();
  }
}
