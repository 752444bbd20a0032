/** A range of integers handed out one at a time (Service IPs, NodePorts). Pure: imports nothing from the project. */

export class IntRange {
  constructor(
    readonly first: number,
    readonly last: number,
  ) {}

  get size(): number {
    return this.last - this.first + 1;
  }

  contains(n: number): boolean {
    return Number.isInteger(n) && n >= this.first && n <= this.last;
  }

  /** The free members, in order from `first + offset`, wrapping round to `first`. */
  *free(used: ReadonlySet<number>, offset = 0): Generator<number> {
    for (let i = 0; i < this.size; i++) {
      const n = this.first + ((offset + i) % this.size);
      if (!used.has(n)) yield n;
    }
  }
}
