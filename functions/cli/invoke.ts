// `fanout invoke <event.json>`: a Lambda handler run here with an event and a local context, like `sam local invoke`.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import { CliError, EXIT } from './errors.ts';
import { addStoreOptions, collectList, integerIn } from './flags.ts';
import { type HandlerEnvFlags, prepareHandlerEnv } from './handler-env.ts';
import { readJsonInput } from './job-input.ts';

export const HANDLERS = ['run-job', 'api'] as const;
type HandlerName = (typeof HANDLERS)[number];

interface InvokeFlags extends HandlerEnvFlags {
  handler?: HandlerName;
  remainingMs: number;
  function?: string;
  template: string;
}

/** Where `npm run synth` writes the stack's template (stack name Fanout). */
const DEFAULT_TEMPLATE = 'cdk.out/Fanout.template.json';

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
      '--function <logicalId>',
      "run that function's synthesized bundle from cdk.out (like sam local invoke -t <template> <logicalId>), " +
        'e.g. RunnerFunction51B573FD or ApiFunction6BF808ED; run `npm run synth` first',
    )
    .option('--template <file>', 'the synthesized template, with --function', DEFAULT_TEMPLATE)
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
      '\nExamples:\n  fanout invoke events/direct.json --allow-private\n  fanout invoke events/api-get.json --handler api\n' +
        '  npm run synth && fanout invoke events/direct.json --function RunnerFunction51B573FD --allow-private',
    )
    .action(async (eventPath: string, flags: InvokeFlags) => {
      process.exitCode = await invoke(eventPath, flags);
    });
}

async function invoke(eventPath: string, flags: InvokeFlags): Promise<number> {
  const input = await readJsonInput(eventPath);
  const name = flags.handler ?? (looksLikeApiEvent(input.value) ? 'api' : 'run-job');
  const bundle = flags.function === undefined ? null : bundleOf(flags.template, flags.function);
  const opened = await prepareHandlerEnv(flags, (line) => void process.stderr.write(`fanout: ${line}\n`));
  try {
    if (bundle !== null) return await invokeBundle(bundle, input.value, flags);
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
    await printLine(output);
    return exitCode === 0 ? EXIT.OK : EXIT.FATAL;
  } finally {
    await opened.close();
  }
}

interface Bundle {
  logicalId: string;
  /** The bundle's module and export, `path#export` as the local invoker takes it. */
  reference: string;
}

/** The function's asset in the synthesized template: its `aws:asset:path` and its `Handler`. */
function bundleOf(templatePath: string, logicalId: string): Bundle {
  if (!existsSync(templatePath)) {
    throw new CliError(`${templatePath} does not exist: run \`npm run synth\` first (or give --template)`);
  }
  const template = JSON.parse(readFileSync(templatePath, 'utf8')) as {
    Resources?: Record<
      string,
      { Type?: string; Metadata?: Record<string, unknown>; Properties?: { Handler?: unknown } }
    >;
  };
  const resources = template.Resources ?? {};
  const resource = resources[logicalId];
  if (resource?.Type !== 'AWS::Lambda::Function') {
    const functions = Object.keys(resources).filter((id) => resources[id]?.Type === 'AWS::Lambda::Function');
    throw new CliError(
      `${templatePath} has no function ${logicalId}; its functions: ${functions.join(', ')}`,
    );
  }
  const assetPath = resource.Metadata?.['aws:asset:path'];
  const handler = resource.Properties?.Handler;
  if (typeof assetPath !== 'string' || typeof handler !== 'string' || !handler.includes('.')) {
    throw new CliError(`${logicalId} in ${templatePath} has no bundled asset (aws:asset:path) or Handler`);
  }
  const dot = handler.lastIndexOf('.');
  const file = join(dirname(templatePath), assetPath, `${handler.slice(0, dot)}.mjs`);
  if (!existsSync(file)) throw new CliError(`${file} does not exist: run \`npm run synth\` again`);
  return { logicalId, reference: `${file}#${handler.slice(dot + 1)}` };
}

/**
 * Runs the synthesized bundle itself, as Lambda would load it. Work it starts asynchronously (a 202's
 * run, continuations) runs in this process (FANOUT_LOCAL_DISPATCH=inprocess) and is waited for, its
 * logs on stderr like the handler's: stdout gets the result alone.
 */
async function invokeBundle(bundle: Bundle, event: unknown, flags: InvokeFlags): Promise<number> {
  process.env.FANOUT_LOCAL_DISPATCH ??= 'inprocess';
  const [{ invokeForCli }, module] = await Promise.all([
    import('../local/invoke.ts'),
    import(pathToFileURL(bundle.reference.split('#')[0] ?? '').href) as Promise<Record<string, unknown>>,
  ]);
  const drain = module.drainInProcessRuns;
  const { exitCode, output } = await invokeForCli(bundle.reference, event, {
    remainingMs: flags.remainingMs,
    functionName: bundle.logicalId,
    ...(typeof drain === 'function' ? { drain: drain as () => Promise<void> } : {}),
  });
  await printLine(output);
  return exitCode === 0 ? EXIT.OK : EXIT.FATAL;
}

/** The result on stdout, flushed before the command returns its exit code. */
function printLine(output: string): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    process.stdout.write(`${output}\n`, (error) => (error ? reject(error) : resolve())),
  );
}

/** API Gateway HTTP API events carry requestContext.http; every runner event lacks it. */
export function looksLikeApiEvent(event: unknown): boolean {
  if (typeof event !== 'object' || event === null) return false;
  const context = (event as { requestContext?: { http?: unknown } }).requestContext;
  return typeof context === 'object' && context !== null && typeof context.http === 'object';
}
