// Time as a dependency: the engine and the store read and wait through a Clock so tests can inject one.
import { setTimeout as delay } from 'node:timers/promises';

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` (negative clamps to 0); rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms, signal) => {
    signal?.throwIfAborted();
    // Clamp: a deadline in the past means "now", never a negative timer.
    await delay(Math.max(0, ms), undefined, signal ? { signal } : undefined);
  },
};
