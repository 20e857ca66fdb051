// Test clocks: one whose sleeps resolve at once but record the delays asked for, and a manual one
// whose sleeps resolve only when the test advances time past them.
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

export interface ManualClock extends Clock {
  /** Moves now() forward and wakes every sleep that is due, in order. */
  advance(ms: number): void;
  /** Sleeps not yet due. */
  readonly sleeping: number;
  /** Lets pending promise chains run (a few turns of the loop) before the test looks again. */
  settle(): Promise<void>;
}

interface Timer {
  at: number;
  resolve(): void;
}

export function manualClock(startMs: number = Date.now()): ManualClock {
  let now = startMs;
  let timers: Timer[] = [];
  return {
    now: () => now,
    get sleeping() {
      return timers.length;
    },
    sleep(ms, signal) {
      signal?.throwIfAborted();
      return new Promise<void>((resolve, reject) => {
        const timer: Timer = {
          at: now + Math.max(0, ms),
          resolve: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = (): void => {
          timers = timers.filter((other) => other !== timer);
          reject(signal?.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        timers.push(timer);
      });
    },
    advance(ms) {
      now += ms;
      const due = timers.filter((timer) => timer.at <= now).sort((a, b) => a.at - b.at);
      timers = timers.filter((timer) => timer.at > now);
      for (const timer of due) timer.resolve();
    },
    async settle() {
      for (let turn = 0; turn < 5; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
    },
  };
}
