// The local Lambda invoker: a fake context with a settable remaining time, handlers by function or file, the CLI form.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Context } from 'aws-lambda';

export type LambdaHandler = (event: unknown, context: Context) => Promise<unknown>;

export interface InvokeOptions {
  /** What `getRemainingTimeInMillis()` starts from; counts down on `now`. Default 900,000 (15 minutes). */
  remainingMs?: number;
  functionName?: string;
  /** Set for the duration of the invocation (and of loading a handler file), then restored. */
  env?: Record<string, string>;
  /** The clock the remaining time counts down on (tests inject one); default Date.now. */
  now?: () => number;
}

/** What Lambda returns for a failed invocation, and what `sam local invoke` prints. */
export interface LambdaErrorPayload {
  errorType: string;
  errorMessage: string;
  trace: string[];
}

const DEFAULT_REMAINING_MS = 900_000;
const HANDLERS_DIR = fileURLToPath(new URL('../handlers/', import.meta.url));

export function createFakeContext(options: InvokeOptions = {}): Context {
  const now = options.now ?? Date.now;
  const endsAt = now() + (options.remainingMs ?? DEFAULT_REMAINING_MS);
  const functionName = options.functionName ?? 'fanout-local';
  const unsupported = (): never => {
    throw new Error('callback-style context methods are not supported: return a promise');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, Math.round(endsAt - now())),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

/** Runs a handler (a function, or `path[#export]` of a module such as a bundled index.mjs) once. */
export async function invokeHandler(
  handler: LambdaHandler | string,
  event: unknown,
  options: InvokeOptions = {},
): Promise<unknown> {
  return withEnv(options.env, async () => {
    const run = typeof handler === 'string' ? await loadHandler(handler, options.env !== undefined) : handler;
    return run(event, createFakeContext(options));
  });
}

let loads = 0;

/** Imports `path[#exportName]` (default export name `handler`); `fresh` re-evaluates it (new env, new config). */
export async function loadHandler(reference: string, fresh = false): Promise<LambdaHandler> {
  const [path = '', exportName = 'handler'] = reference.split('#');
  const url = pathToFileURL(resolve(path));
  // Modules are cached by URL: a query re-evaluates the file, so a new env yields a new cold start.
  if (fresh) url.search = `invoke=${++loads}`;
  const module = (await import(url.href)) as Record<string, unknown>;
  const handler = module[exportName];
  if (typeof handler !== 'function') throw new Error(`${path} has no exported function "${exportName}"`);
  return handler as LambdaHandler;
}

/** The handler source for an event, as `fanout invoke` chooses it: API Gateway events go to the API. */
export function handlerFileForEvent(event: unknown): string {
  const isApi =
    typeof event === 'object' && event !== null && 'requestContext' in event && 'routeKey' in event;
  return resolve(HANDLERS_DIR, isApi ? 'api.ts' : 'run-job.ts');
}

export function toLambdaError(error: unknown): LambdaErrorPayload {
  if (error instanceof Error) {
    const trace = (error.stack ?? '').split('\n').map((line) => line.trim());
    return { errorType: error.name, errorMessage: error.message, trace };
  }
  return { errorType: 'Error', errorMessage: String(error), trace: [] };
}

/**
 * The CLI form: the handler's logs go to stderr (Lambda would send them to CloudWatch), its result
 * alone to stdout; a failure prints Lambda's error payload on stdout and resolves to exit code 1.
 */
export async function invokeForCli(
  handler: LambdaHandler | string,
  event: unknown,
  options: InvokeOptions & { drain?: () => Promise<void> } = {},
): Promise<{ exitCode: 0 | 1; output: string }> {
  const stdoutWrite = process.stdout.write;
  process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
  try {
    let answer: { exitCode: 0 | 1; output: string };
    try {
      const result = await invokeHandler(handler, event, options);
      answer = { exitCode: 0, output: JSON.stringify(result ?? null) };
    } catch (error) {
      answer = { exitCode: 1, output: JSON.stringify(toLambdaError(error)) };
    }
    // Work the invocation started here (a 202's run, a continuation) logs to stderr too.
    await options.drain?.();
    return answer;
  } finally {
    process.stdout.write = stdoutWrite;
  }
}

async function withEnv<T>(env: Record<string, string> | undefined, work: () => Promise<T>): Promise<T> {
  if (env === undefined) return work();
  const saved = new Map(Object.keys(env).map((name) => [name, process.env[name]]));
  Object.assign(process.env, env);
  try {
    return await work();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

// node functions/local/invoke.ts <event.json|-> [handler-file[#export]] [--remaining-ms N]
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const flag = args.indexOf('--remaining-ms');
  const remainingMs = flag >= 0 ? Number(args.splice(flag, 2)[1]) : undefined;
  const [eventPath, handlerPath] = args;
  if (!eventPath) {
    process.stderr.write('usage: invoke.ts <event.json|-> [handler-file[#export]] [--remaining-ms N]\n');
    process.exit(1);
  }
  const event: unknown = JSON.parse(readFileSync(eventPath === '-' ? 0 : eventPath, 'utf8'));
  // The result alone on stdout: work the handler started in this process may log after it returns.
  const print = process.stdout.write.bind(process.stdout);
  process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
  const { exitCode, output } = await invokeForCli(
    handlerPath ?? handlerFileForEvent(event),
    event,
    remainingMs === undefined ? {} : { remainingMs },
  );
  print(`${output}\n`);
  process.exitCode = exitCode;
}
