// `fanout redrive <jobId>`: re-run a job's failed items (all, or those with the given codes) as a new run.
import { Command, Option } from 'commander';
import type { ErrorCode } from '../core/index.ts';
import { CliError, oneLine } from './errors.ts';
import { addStoreOptions, collectList } from './flags.ts';
import { PROGRESS_MODES } from './progress.ts';
import { reportManifest, type SessionFlags, withRunSession } from './session.ts';

interface RedriveFlags extends SessionFlags {
  codes?: string[];
}

export function redriveCommand(): Command {
  const command = new Command('redrive')
    .summary('re-run the failed items of a job (--codes CODE,... to choose)')
    .description(
      "Re-run a job's failed items as a new run of the same job: an item that now succeeds moves from " +
        'errors to results, and every item id stays in exactly one place. Output and exit codes as `run`.',
    )
    .argument('<jobId>', 'the job id');
  return addStoreOptions(command)
    .option(
      '--codes <codes>',
      'only items failed with these codes, e.g. HTTP_STATUS,TIMEOUT_TOTAL',
      collectList,
    )
    .addOption(
      new Option('--allow <hosts>', 'also allow these hosts or CIDRs, comma-separated')
        .env('FANOUT_ALLOW')
        .argParser(collectList),
    )
    .option('--allow-private', 'allow loopback, RFC 1918, CGNAT and ULA ranges (never link-local)')
    .addOption(new Option('--progress <mode>', 'progress display').choices(PROGRESS_MODES).default('auto'))
    .action(async (jobId: string, flags: RedriveFlags) => {
      process.exitCode = await redrive(jobId, flags);
    });
}

async function redrive(jobId: string, flags: RedriveFlags): Promise<number> {
  const { ERROR_CODES, redriveJob } = await import('../core/index.ts');
  const codes = flags.codes ?? [];
  const unknown = codes.filter((code) => !(ERROR_CODES as readonly string[]).includes(code));
  if (unknown.length > 0) {
    throw new CliError(`--codes: unknown code ${unknown.join(', ')} (known: ${ERROR_CODES.join(', ')})`);
  }
  let location = '';
  const manifest = await withRunSession(flags, async (session) => {
    location = session.opened.location;
    try {
      return await redriveJob(jobId, { codes: codes as ErrorCode[] }, session.runtime);
    } catch (error) {
      throw new CliError(oneLine(error, `job ${jobId}`));
    }
  });
  return reportManifest(manifest, location);
}
