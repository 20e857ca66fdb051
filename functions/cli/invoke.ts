// `fanout invoke <event.json>`: a Lambda handler run here with an event and a local context, like `sam local invoke`.
import { Command, Option } from 'commander';
import { EXIT } from './errors.ts';
import { addStoreOptions, collectList, integerIn } from './flags.ts';
import { type HandlerEnvFlags, prepareHandlerEnv } from './handler-env.ts';
import { readJsonInput } from './job-input.ts';

export const HANDLERS = ['run-job', 'api'] as const;
type HandlerName = (typeof HANDLERS)[number];

interface InvokeFlags extends HandlerEnvFlags {
  handler?: HandlerName;
  remainingMs: number;
}

/** Lambda's longest invocation: the default budget a local context reports. */
const DEFAULT_REMAINING_MS = 900_000;

export function invokeCommand(): Command {
  const command = new Command('invoke')
    .summary('run a Lambda handler with an event and a local context (like sam local invoke)')
    .description(
      "Run one of fanout's Lambda handlers in this process with an event (a file, or - for stdin) and a " +
        "local context whose remaining time you set. The handler's result alone goes to stdout. Sample events " +
        'are in events/. S3 and network settings as for `run`; runs a handler would start asynchronously ' +
        '(202 answers, continuations) run in this process before it exits.',
    )
    .argument('<event>', 'event file (JSON), or - to read it from stdin');
  return addStoreOptions(command)
    .addOption(
      new Option(
        '--handler <name>',
        'which function (default: api for API Gateway events, else run-job)',
      ).choices(HANDLERS),
    )
    .option(
      '--remaining-ms <ms>',
      'what context.getRemainingTimeInMillis() starts from',
      integerIn(1, 900_000),
      DEFAULT_REMAINING_MS,
    )
    .addOption(
      new Option('--allow <hosts>', 'also allow these hosts or CIDRs, comma-separated')
        .env('FANOUT_ALLOW')
        .argParser(collectList),
    )
    .option('--allow-private', 'allow loopback, RFC 1918, CGNAT and ULA ranges (never link-local)')
    .addHelpText(
      'after',
      '\nExamples:\n  fanout invoke events/direct.json --allow-private\n  fanout invoke events/api-get.json --handler api',
    )
    .action(async (eventPath: string, flags: InvokeFlags) => {
      process.exitCode = await invoke(eventPath, flags);
    });
}

async function invoke(eventPath: string, flags: InvokeFlags): Promise<number> {
  const input = await readJsonInput(eventPath);
  const name = flags.handler ?? (looksLikeApiEvent(input.value) ? 'api' : 'run-job');
  const opened = await prepareHandlerEnv(flags, (line) => void process.stderr.write(`fanout: ${line}\n`));
  try {
    const [{ createLocalHandlers }, { invokeForCli }] = await Promise.all([
      import('./local-lambda.ts'),
      import('../local/invoke.ts'),
    ]);
    const handlers = await createLocalHandlers();
    const { exitCode, output } = await invokeForCli(
      name === 'api' ? handlers.api : handlers.runJob,
      input.value,
      {
        remainingMs: flags.remainingMs,
        functionName: name === 'api' ? 'fanout-api' : 'fanout-runner',
        // A 202 or a continuation started a run here: finish it (its logs on stderr) before the store goes.
        drain: () => handlers.drain(),
      },
    );
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(`${output}\n`, (error) => (error ? reject(error) : resolve())),
    );
    return exitCode === 0 ? EXIT.OK : EXIT.FATAL;
  } finally {
    await opened.close();
  }
}

/** API Gateway HTTP API events carry requestContext.http; every runner event lacks it. */
export function looksLikeApiEvent(event: unknown): boolean {
  if (typeof event !== 'object' || event === null) return false;
  const context = (event as { requestContext?: { http?: unknown } }).requestContext;
  return typeof context === 'object' && context !== null && typeof context.http === 'object';
}
