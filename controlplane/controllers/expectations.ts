/**
 * Creations and deletions a controller has asked for but not yet seen in its cache, per owner key,
 * as kube-controller-manager's ControllerExpectations: while they are pending the owner's diff is
 * not trusted (the cache lags), which is what makes running a reconcile twice harmless. Pending
 * expectations expire, so a lost watch event cannot wedge an owner forever.
 */
export class Expectations {
  private pending = new Map<string, { adds: number; dels: Set<string>; at: number }>();

  constructor(
    private readonly ttlMs = 5 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  expect(owner: string, adds: number, deleteKeys: string[]): void {
    this.pending.set(owner, { adds, dels: new Set(deleteKeys), at: this.now() });
  }

  creationObserved(owner: string): void {
    const e = this.pending.get(owner);
    if (e && e.adds > 0) e.adds--;
  }

  /** Creating failed: no event will come for it. */
  creationFailed(owner: string): void {
    this.creationObserved(owner);
  }

  deletionObserved(owner: string, podKey: string): void {
    this.pending.get(owner)?.dels.delete(podKey);
  }

  satisfied(owner: string): boolean {
    const e = this.pending.get(owner);
    if (!e) return true;
    if ((e.adds <= 0 && e.dels.size === 0) || this.now() - e.at > this.ttlMs) {
      this.pending.delete(owner);
      return true;
    }
    return false;
  }

  forget(owner: string): void {
    this.pending.delete(owner);
  }
}
