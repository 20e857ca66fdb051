// Ctrl-C during a run: the first aborts through the runtime signal (the run winds down and commits), the second exits.
import { EXIT } from './errors.ts';

export interface InterruptTrap extends Disposable {
  readonly interrupted: boolean;
}

/**
 * SIGINT and SIGTERM abort `controller` once; the run then leaves in-flight items pending, flushes its parts
 * and writes a `partial` manifest. A second signal exits at once: whatever the manifest last committed is
 * what a rerun resumes from, so nothing is lost but the work in flight.
 */
export function trapInterrupts(controller: AbortController, say: (line: string) => void): InterruptTrap {
  let count = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    count++;
    if (count === 1) {
      say(
        `${signal === 'SIGINT' ? 'interrupted' : signal}: stopping; in-flight items become pending and the ` +
          'manifest is written (press Ctrl-C again to quit at once)',
      );
      controller.abort(new Error(`interrupted by ${signal}`));
      return;
    }
    say('interrupted again: exiting now; rerun the same job to resume from its last manifest');
    process.exit(EXIT.INTERRUPTED);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    get interrupted() {
      return count > 0;
    },
    [Symbol.dispose]() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
