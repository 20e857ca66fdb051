// The runner's Lambda entry: configuration validated at cold start (a bad variable fails the init, by name).
import { loadConfig } from './config.ts';
import { createRunJobHandler } from './runner.ts';

export const handler = createRunJobHandler({ config: loadConfig(process.env) });

/** For a local invoke of the bundle (`fanout invoke --function`): waits for runs started in-process. */
export { drainInProcessRuns } from './dispatch.ts';
