// The jobs API's Lambda entry: configuration validated at cold start (a bad variable fails the init, by name).
import { loadConfig } from './config.ts';
import { createApiHandler } from './jobs-api.ts';

export const handler = createApiHandler({ config: loadConfig(process.env) });
