// A manual clock for politeness tests: sleeps resolve only when the test advances time past them.
import type { Clock } from '../../functions/core/clock.ts';

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
