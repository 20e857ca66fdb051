// Test clocks: a manual clock whose sleeps resolve at once but record the delays asked for.
import type { Clock } from '../../functions/core/clock.ts';

export interface RecordingClock extends Clock {
  /** Every delay passed to sleep(), in order. */
  readonly sleeps: number[];
  /** Moves now() forward (sleep() also advances it by the delay slept). */
  advance(ms: number): void;
}

/** now() starts at `startMs` (default: the real time, so HTTP-date Retry-After values make sense). */
export function recordingClock(startMs: number = Date.now()): RecordingClock {
  let now = startMs;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    advance(ms) {
      now += ms;
    },
    async sleep(ms, signal) {
      signal?.throwIfAborted();
      sleeps.push(ms);
      now += Math.max(0, ms);
      // A turn of the loop, so a sleeping item still yields to others as a real sleep would.
      await new Promise<void>((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
    },
  };
}
