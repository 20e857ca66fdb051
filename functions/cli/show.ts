// `fanout show <jobId>`: a job's manifest and the first lines of its listed results, errors and pending items.
import { Command } from 'commander';
import { CliError } from './errors.ts';
import { addStoreOptions, integerIn } from './flags.ts';
import { openStore, type StoreFlags } from './store.ts';

interface ShowFlags extends StoreFlags {
  limit: number;
}

export function showCommand(): Command {
  const command = new Command('show')
    .summary('the manifest and the first results and errors of a job')
    .description(
      "Print a job's manifest with the first results, errors and pending items as one JSON document. " +
        'Only the parts the manifest lists are read: a part no manifest lists is debris of an interrupted run.',
    )
    .argument('<jobId>', 'the job id (the manifest\'s "jobId")');
  return addStoreOptions(command)
    .option('-n, --limit <n>', 'lines to show from results, errors and pending', integerIn(0, 10_000), 5)
    .action(async (jobId: string, flags: ShowFlags) => {
      process.exitCode = await showJob(jobId, flags);
    });
}

async function showJob(jobId: string, flags: ShowFlags): Promise<number> {
  const say = (line: string): void => void process.stderr.write(`fanout: ${line}\n`);
  const opened = await openStore(flags, process.env, say);
  try {
    const { readManifest } = await import('../core/index.ts');
    const { readFirstLines } = await import('./parts.ts');
    const manifest = await readManifest(opened.store, jobId);
    if (manifest === null)
      throw new CliError(`no manifest for job ${jobId} under ${opened.location}/${jobId}/`);
    const [results, errors, pending] = await Promise.all([
      readFirstLines(opened.store, manifest.results, flags.limit),
      readFirstLines(opened.store, manifest.errors, flags.limit),
      readFirstLines(opened.store, manifest.pending === null ? [] : [manifest.pending], flags.limit),
    ]);
    const shown = { manifest, results, errors, pending };
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
    return 0;
  } finally {
    await opened.close();
  }
}
