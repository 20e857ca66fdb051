// A compact set of item ids: 16-hex ids packed as 64-bit integers in an open-addressing table.
//
// Derived ids are exactly 16 lowercase hex digits, so they map one-to-one onto 64-bit integers kept as
// two 32-bit halves (no BigInt arithmetic on the hot path). A million of them cost 18 MiB of typed
// arrays (measured), with no per-id object for the GC to trace. Other ids (given by the job) are kept exactly in a
// Set<string>: hashing them to 64 bits could make two items collide and lose one.

/** The halves of the last id `pack` accepted: module scratch, so the per-line path allocates nothing. */
let packedHigh = 0;
let packedLow = 0;

/**
 * Reads a 16-lowercase-hex id into packedHigh/packedLow; false for any other id. One pass over the chars
 * instead of a regex test, two slices and two parseInts: this runs once per source line.
 */
function pack(id: string): boolean {
  if (id.length !== 16) return false;
  let high = 0;
  let low = 0;
  for (let index = 0; index < 16; index++) {
    const code = id.charCodeAt(index);
    // 0-9 are 48-57, a-f are 97-102.
    const digit = code >= 48 && code <= 57 ? code - 48 : code >= 97 && code <= 102 ? code - 87 : -1;
    if (digit < 0) return false;
    if (index < 8) high = high * 16 + digit;
    else low = low * 16 + digit;
  }
  packedHigh = high;
  packedLow = low;
  return true;
}
const INITIAL_CAPACITY = 1024;
/** Grow past half full: probe chains stay short and the table stays 2x the entries. */
const MAX_LOAD = 0.5;

export class IdSet {
  #high = new Uint32Array(INITIAL_CAPACITY);
  #low = new Uint32Array(INITIAL_CAPACITY);
  /** 1 where a slot holds an id; separate so the id 0000000000000000 needs no special case. */
  #used = new Uint8Array(INITIAL_CAPACITY);
  #packedCount = 0;
  #other = new Set<string>();

  get size(): number {
    return this.#packedCount + this.#other.size;
  }

  /** Bytes held by the packed table (what a million-id set costs), for benchmarks and logs. */
  get packedBytes(): number {
    return this.#high.byteLength + this.#low.byteLength + this.#used.byteLength;
  }

  /** Adds `id`; returns false when it was already there. */
  add(id: string): boolean {
    if (!pack(id)) {
      if (this.#other.has(id)) return false;
      this.#other.add(id);
      return true;
    }
    const high = packedHigh;
    const low = packedLow;
    if (this.#find(high, low) >= 0) return false;
    if ((this.#packedCount + 1) / this.#used.length > MAX_LOAD) this.#grow();
    this.#insert(high, low);
    this.#packedCount++;
    return true;
  }

  has(id: string): boolean {
    if (!pack(id)) return this.#other.has(id);
    return this.#find(packedHigh, packedLow) >= 0;
  }

  #slot(high: number, low: number): number {
    // Derived ids are SHA-256 prefixes (already uniform); given hex ids may not be, so mix both halves.
    return (Math.imul(high ^ (low >>> 16), 0x9e3779b1) ^ Math.imul(low, 0x85ebca6b)) >>> 0;
  }

  #find(high: number, low: number): number {
    const mask = this.#used.length - 1;
    let index = this.#slot(high, low) & mask;
    while (this.#used[index] === 1) {
      if (this.#high[index] === high && this.#low[index] === low) return index;
      index = (index + 1) & mask;
    }
    return -1;
  }

  #insert(high: number, low: number): void {
    const mask = this.#used.length - 1;
    let index = this.#slot(high, low) & mask;
    while (this.#used[index] === 1) index = (index + 1) & mask;
    this.#used[index] = 1;
    this.#high[index] = high;
    this.#low[index] = low;
  }

  #grow(): void {
    const oldHigh = this.#high;
    const oldLow = this.#low;
    const oldUsed = this.#used;
    const capacity = oldUsed.length * 2;
    this.#high = new Uint32Array(capacity);
    this.#low = new Uint32Array(capacity);
    this.#used = new Uint8Array(capacity);
    for (let index = 0; index < oldUsed.length; index++) {
      if (oldUsed[index] === 1) this.#insert(oldHigh[index] ?? 0, oldLow[index] ?? 0);
    }
  }
}
