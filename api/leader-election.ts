/**
 * Leader election on coordination.k8s.io/v1 Leases, as client-go's leaderelection package.
 * Candidates race to create or take over one Lease with optimistic concurrency (the update carries
 * the resourceVersion it read; a 409 means someone else won). The holder renews every retry period;
 * if it cannot renew within the renew deadline it stops leading. A lease counts as expired when
 * its record has not changed for leaseDurationSeconds of *this process's* clock, so clock skew
 * between machines does not matter.
 */
import type { V1Lease } from "@kubernetes/client-node";
import { setMaxListeners } from "node:events";
import { sleep } from "../lib/sleep.ts";
import { microTime } from "../lib/time.ts";

/** The three calls leader election makes; the typed REST client provides them. */
export interface LeaseStore {
  /** undefined when the Lease does not exist. */
  get(namespace: string, name: string): Promise<V1Lease | undefined>;
  /** Fails (409) when it exists already. */
  create(lease: V1Lease): Promise<V1Lease>;
  /** Fails (409) when metadata.resourceVersion is stale. */
  update(lease: V1Lease): Promise<V1Lease>;
}

export interface LeaderElectionConfig {
  store: LeaseStore;
  namespace: string;
  name: string;
  /** Unique per candidate, e.g. `hostname_pid`. */
  identity: string;
  leaseDurationSeconds?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /**
   * Called once leadership is acquired; `signal` aborts when it is lost. When it returns a promise
   * (the term's work), that promise settling before the term is over ends the term: the leader
   * steps down and gives the lease up rather than hold it with nothing running.
   */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  onStoppedLeading?: () => void;
  /** Called whenever the observed holder changes (also to someone else). */
  onNewLeader?: (identity: string) => void;
  /** On shutdown the holder clears holderIdentity so another candidate takes over at once. */
  releaseOnCancel?: boolean;
  onError?: (err: unknown) => void;
  now?: () => number;
}

export const LEASE_DEFAULTS = { leaseDurationSeconds: 15, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

/** What a candidate should do with the Lease it just read. Pure. */
export type LeaseDecision =
  | { action: "create"; lease: V1Lease }
  | { action: "update"; lease: V1Lease }
  | { action: "wait"; holder: string };

/**
 * Decide from the current Lease (or its absence) and whether its record has been unchanged for
 * longer than its duration (`expired`, measured on the local clock by the caller).
 */
export function leaseDecision(
  current: V1Lease | undefined,
  args: {
    namespace: string;
    name: string;
    identity: string;
    leaseDurationSeconds: number;
    nowMs: number;
    expired: boolean;
  },
): LeaseDecision {
  const now = microTime(args.nowMs) as unknown as Date;
  if (!current) {
    return {
      action: "create",
      lease: {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { namespace: args.namespace, name: args.name },
        spec: {
          holderIdentity: args.identity,
          leaseDurationSeconds: args.leaseDurationSeconds,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: 0,
        },
      },
    };
  }
  const spec = current.spec ?? {};
  const holder = spec.holderIdentity ?? "";
  const mine = holder === args.identity;
  if (!mine && holder !== "" && !args.expired) return { action: "wait", holder };
  const transitions = spec.leaseTransitions ?? 0;
  return {
    action: "update",
    lease: {
      ...current,
      spec: {
        ...spec,
        holderIdentity: args.identity,
        leaseDurationSeconds: args.leaseDurationSeconds,
        acquireTime: mine ? spec.acquireTime : now,
        renewTime: now,
        leaseTransitions: mine ? transitions : transitions + 1,
      },
    },
  };
}

function recordOf(lease: V1Lease | undefined): string {
  const s = lease?.spec;
  return JSON.stringify([s?.holderIdentity, String(s?.renewTime ?? ""), s?.leaseTransitions]);
}

export class LeaderElector {
  private readonly leaseDurationSeconds: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;
  private observedRecord = "";
  private observedAt = 0;
  private observedHolder = "";
  private lastLease: V1Lease | undefined;
  private leading = false;

  constructor(private readonly cfg: LeaderElectionConfig) {
    this.leaseDurationSeconds = cfg.leaseDurationSeconds ?? LEASE_DEFAULTS.leaseDurationSeconds;
    this.renewDeadlineMs = cfg.renewDeadlineMs ?? LEASE_DEFAULTS.renewDeadlineMs;
    this.retryPeriodMs = cfg.retryPeriodMs ?? LEASE_DEFAULTS.retryPeriodMs;
    this.now = cfg.now ?? Date.now;
    if (this.renewDeadlineMs >= this.leaseDurationSeconds * 1000)
      throw new Error("leader election: renew deadline must be shorter than the lease duration");
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Last observed holder identity ("" when none). */
  get leader(): string {
    return this.observedHolder;
  }

  /**
   * Campaigns, leads, and campaigns again after losing the lease, until `signal` aborts; then
   * releases the lease if held (and releaseOnCancel is not false).
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.acquire(signal);
      if (signal.aborted) break;
      await this.lead(signal);
    }
  }

  /** One attempt to acquire or renew; true when this candidate holds the lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { store, namespace, name, identity } = this.cfg;
    // Fast path (as client-go's): a leader whose lease is still valid renews the Lease it last
    // wrote without reading it first, halving the idle requests; the resourceVersion it carries
    // makes a write after someone else's change fail (409), and then the slow path reads.
    const mine = this.lastLease;
    if (
      this.leading &&
      mine?.spec?.holderIdentity === identity &&
      this.now() - this.observedAt < this.leaseDurationSeconds * 1000
    ) {
      const nowMs = this.now();
      try {
        const written = await store.update({
          ...mine,
          spec: { ...mine.spec, renewTime: microTime(nowMs) as unknown as Date },
        });
        this.lastLease = written;
        this.observedRecord = recordOf(written);
        this.observedAt = nowMs;
        return true;
      } catch {
        // stale or unreachable: fall back to reading the Lease
      }
    }
    const current = await store.get(namespace, name);
    const record = recordOf(current);
    const nowMs = this.now();
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAt = nowMs;
    }
    this.observe(current?.spec?.holderIdentity ?? "");
    const expired = nowMs - this.observedAt > this.leaseDurationSeconds * 1000;
    const decision = leaseDecision(current, {
      namespace,
      name,
      identity,
      leaseDurationSeconds: this.leaseDurationSeconds,
      nowMs,
      expired,
    });
    if (decision.action === "wait") return false;
    const written =
      decision.action === "create" ? await store.create(decision.lease) : await store.update(decision.lease);
    this.lastLease = written;
    this.observedRecord = recordOf(written);
    this.observedAt = nowMs;
    this.observe(identity);
    return true;
  }

  private observe(holder: string): void {
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder) this.cfg.onNewLeader?.(holder);
    }
  }

  private async attempt(): Promise<boolean> {
    try {
      return await this.tryAcquireOrRenew();
    } catch (err) {
      // 409: another candidate wrote first — the normal outcome of losing a race, not an error.
      if ((err as { code?: unknown } | undefined)?.code !== 409) this.cfg.onError?.(err);
      return false;
    }
  }

  private async acquire(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (await this.attempt()) return;
      await sleep(jitter(this.retryPeriodMs), signal);
    }
  }

  private async lead(outer: AbortSignal): Promise<void> {
    const ctl = new AbortController();
    // Every informer and loop of the term listens on this signal.
    setMaxListeners(0, ctl.signal);
    const stop = (): void => ctl.abort();
    outer.addEventListener("abort", stop, { once: true });
    this.leading = true;
    let workEnded = false;
    const ended = (err?: unknown): void => {
      workEnded = true;
      if (err !== undefined) this.cfg.onError?.(err);
    };
    const work = Promise.resolve().then(async () => {
      let ret: void | Promise<void>;
      try {
        ret = this.cfg.onStartedLeading(ctl.signal);
      } catch (err) {
        return ended(err);
      }
      // only a term's work (a promise) ends the term when it settles; a plain callback does not
      if (ret instanceof Promise) await ret.then(() => ended(), ended);
    });
    let lastRenew = this.now();
    let stepDown = false;
    while (!outer.aborted) {
      await sleep(this.retryPeriodMs, outer);
      if (outer.aborted) break;
      // A leader whose loops have ended holds the lease and does nothing: worse than no leader.
      // End the term (and give the lease up) so the next one starts its loops afresh.
      if (workEnded) {
        this.cfg.onError?.(
          new Error(
            `leader election ${this.cfg.namespace}/${this.cfg.name}: the loops ended while leading; stepping down`,
          ),
        );
        stepDown = true;
        break;
      }
      if (await this.attempt()) lastRenew = this.now();
      else if (this.observedHolder !== this.cfg.identity || this.now() - lastRenew > this.renewDeadlineMs)
        break;
    }
    outer.removeEventListener("abort", stop);
    ctl.abort();
    this.leading = false;
    await this.termEnded(work);
    if (stepDown || (outer.aborted && this.cfg.releaseOnCancel !== false)) await this.release();
    this.cfg.onStoppedLeading?.();
  }

  /**
   * Waits for the term's loops to stop after its signal aborted, at most a lease duration: a loop
   * that does not stop must not keep this candidate from campaigning again (it would hold the
   * Lease record while nothing runs). Its signal is aborted, so it does not act any more.
   */
  private async termEnded(work: Promise<unknown>): Promise<void> {
    const ms = this.leaseDurationSeconds * 1000;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), ms)));
    const stuck = await Promise.race([work.then(() => false), late]);
    clearTimeout(timer);
    if (stuck)
      this.cfg.onError?.(
        new Error(
          `leader election ${this.cfg.namespace}/${this.cfg.name}: the loops of the last term did not stop within ${ms / 1000} s of its end; campaigning again`,
        ),
      );
  }

  /** Gives the lease up (holderIdentity cleared) if this candidate still holds it. */
  async release(): Promise<void> {
    const lease = this.lastLease;
    if (!lease || lease.spec?.holderIdentity !== this.cfg.identity) return;
    try {
      const current = await this.cfg.store.get(this.cfg.namespace, this.cfg.name);
      if (current?.spec?.holderIdentity !== this.cfg.identity) return;
      await this.cfg.store.update({
        ...current,
        spec: {
          ...current.spec,
          holderIdentity: "",
          leaseDurationSeconds: 1,
          renewTime: microTime(this.now()) as unknown as Date,
        },
      });
      this.lastLease = undefined;
    } catch (err) {
      this.cfg.onError?.(err);
    }
  }
}

function jitter(ms: number): number {
  return ms * (1 + Math.random() * 0.2);
}
