// `fanout run <job.json | ->`: a job through the core to S3; progress on stderr, the manifest alone on stdout.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import type { Manifest } from '../core/index.ts';
import { CliError, oneLine } from './errors.ts';
import { addStoreOptions, collectList, integerIn, positiveDurationMs } from './flags.ts';
import { readJsonInput } from './job-input.ts';
import { PROGRESS_MODES } from './progress.ts';
import { type RunSession, reportManifest, type SessionFlags, withRunSession } from './session.ts';

export interface RunFlags extends SessionFlags {
  concurrency?: number;
  perHost?: number;
  shards?: number;
  gzip?: boolean;
}

const SHARDS_MODULE = new URL('../local/shards.ts', import.meta.url);

export function runCommand(): Command {
  const command = new Command('run')
    .summary('run a job: progress on stderr, the manifest JSON on stdout')
    .description(
      'Run a job (a JSON file, or - for stdin) and write its results to S3. Progress goes to stderr; the ' +
        'manifest JSON alone goes to stdout, so `fanout run job.json | jq .counts` works. Rerunning a job ' +
        'resumes it; rerunning a complete job prints its manifest and fetches nothing.',
    )
    .argument('<job>', 'job file (JSON), or - to read it from stdin');
  addStoreOptions(command)
    .addOption(
      new Option('--allow <hosts>', 'also allow these hosts or CIDRs, comma-separated (any port)')
        .env('FANOUT_ALLOW')
        .argParser(collectList),
    )
    .option('--allow-private', 'allow loopback, RFC 1918, CGNAT and ULA ranges (never link-local)')
    .option(
      '--concurrency <n>',
      "override the job's options.concurrency (keeps its job id)",
      integerIn(1, 1024),
    )
    .option('--per-host <n>', "override the job's options.perHost (keeps its job id)", integerIn(1, 1024))
    .option(
      '--deadline <duration>',
      'stop starting items after this long (ms, or 30s, 5m): the rest stays pending',
      positiveDurationMs,
    )
    .option('--shards <k>', 'simulate the Distributed Map plan in K processes', integerIn(1, 64))
    .option('--gzip', 'gzip the result and error parts')
    .addOption(
      new Option('--progress <mode>', 'bar on a terminal, else a JSON line every few seconds')
        .choices(PROGRESS_MODES)
        .default('auto'),
    )
    .option('--verbose', "also print the core's info and debug logs")
    .addHelpText(
      'after',
      [
        '',
        'Exit codes: 0 complete, no failed item; 3 complete with failed items; 2 partial (deadline or',
        'Ctrl-C: rerun to resume); 1 bad input, aborted job or fatal error (one line on stderr).',
        '',
        'Examples:',
        '  fanout run job.json --bucket my-results',
        '  fanout run --allow 127.0.0.1 --deadline 30s job.json',
        '  cat job.json | fanout run - | jq .counts',
      ].join('\n'),
    )
    .action(async (jobPath: string, flags: RunFlags) => {
      process.exitCode = await runJobFile(jobPath, flags);
    });
  return command;
}

export async function runJobFile(jobPath: string, flags: RunFlags): Promise<number> {
  const input = await readJsonInput(jobPath);
  const { parseJob } = await import('../core/index.ts');
  let job: unknown;
  let jobId = '';
  let expectedTotal: number | undefined;
  try {
    job = withOverrides(input.value, flags, parseJob);
    // Validate before S3 or the pool start: a bad job costs nothing and says where it is wrong.
    const parsed = parseJob(job);
    jobId = parsed.jobId;
    if (parsed.source === undefined) expectedTotal = parsed.items.length;
  } catch (error) {
    throw new CliError(oneLine(error, input.source));
  }
  const shards = flags.shards;
  let location = '';
  const manifest = await withRunSession(
    { ...flags, ...(expectedTotal === undefined ? {} : { expectedTotal }) },
    async (session) => {
      location = session.opened.location;
      try {
        const { readManifest, runJob } = await import('../core/index.ts');
        const before = await readManifest(session.runtime.store, jobId, session.runtime.signal);
        if (before?.status === 'complete' || before?.status === 'failed') {
          // Returned as it is, fetching nothing: say so, and how to run its failed items again.
          const failed = before.counts.failed;
          session.say(
            `job ${jobId} is already ${before.status}: nothing fetched${failed > 0 ? `; \`fanout redrive ${jobId}\` re-runs its ${failed} failed item${failed === 1 ? '' : 's'}` : ''}`,
          );
        }
        if (shards !== undefined && shards > 1) return await runShards(job, shards, session);
        return await runJob(job, session.runtime);
      } catch (error) {
        if (error instanceof CliError) throw error;
        throw new CliError(oneLine(error, input.source));
      }
    },
  );
  return reportManifest(manifest, location);
}

/**
 * --concurrency and --per-host tune this run, not the job: the job id is pinned to the one the file alone
 * yields, so a rerun with other flags still resumes the same job.
 */
function withOverrides(
  document: unknown,
  flags: RunFlags,
  parseJob: (input: unknown) => { jobId: string },
): unknown {
  if (flags.concurrency === undefined && flags.perHost === undefined) return document;
  const { jobId } = parseJob(document);
  const job = document as { options?: Record<string, unknown> };
  const options: Record<string, unknown> = { ...(job.options ?? {}) };
  if (flags.concurrency !== undefined) options.concurrency = flags.concurrency;
  if (flags.perHost !== undefined) options.perHost = flags.perHost;
  return { ...job, jobId, options };
}

/** The shard simulation lives in functions/local/shards.ts (the scale work); without it, say so. */
async function runShards(job: unknown, shards: number, session: RunSession): Promise<Manifest> {
  if (!existsSync(fileURLToPath(SHARDS_MODULE))) {
    throw new CliError('--shards is not available: functions/local/shards.ts is missing');
  }
  const { runSharded } = (await import(SHARDS_MODULE.href)) as typeof import('../local/shards.ts');
  return runSharded({
    job,
    shards,
    runtime: session.runtime,
    // The children reach the same S3 (the embedded one included) through the standard variables.
    env: session.opened.env,
    onBatch: (done, total) => session.say(`shards: ${done}/${total} batches done`),
  });
}
