// `fanout demo` (what `npm start` runs): flags and Ctrl-C around functions/local/demo.ts.
import { Command, Option } from 'commander';
import { CliError, EXIT } from './errors.ts';
import { parseDurationMs } from './flags.ts';
import { trapInterrupts } from './interrupt.ts';
import { PROGRESS_MODES, type ProgressMode } from './progress.ts';

interface DemoFlags {
  quick?: boolean;
  sequentialMs?: number;
  progress: ProgressMode;
}

export function demoCommand(): Command {
  return new Command('demo')
    .summary('the demo (npm start): a local flaky API, embedded S3, sequential vs fanned out')
    .description(
      'Start a local product API (~200 ms a call, a few flaky endpoints, one broken) and the embedded S3 ' +
        '(files under ./.fanout/), run the same 200-item job sequentially (cut short, then extrapolated) and ' +
        'fanned out (concurrency 20), and report wall times, speedup, retries, failures and latency.',
    )
    .option('--quick', 'a 2 s sequential sample instead of 6 s (the default when CI is set)')
    .addOption(
      new Option('--sequential-ms <duration>', 'how long the sequential sample runs (ms, or 4s)')
        .env('FANOUT_DEMO_SEQUENTIAL_MS')
        .argParser(parseDurationMs),
    )
    .addOption(
      new Option('--progress <mode>', 'bar on a terminal, else a text line every few seconds')
        .choices(PROGRESS_MODES)
        .default('auto'),
    )
    .action(async (flags: DemoFlags) => {
      process.exitCode = await demo(flags);
    });
}

async function demo(flags: DemoFlags): Promise<number> {
  const { runDemo, DEFAULT_SEQUENTIAL_MS, QUICK_SEQUENTIAL_MS } = await import('../local/demo.ts');
  const quick =
    flags.quick ?? (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false');
  const sequentialMs = flags.sequentialMs ?? (quick ? QUICK_SEQUENTIAL_MS : DEFAULT_SEQUENTIAL_MS);
  const progress: ProgressMode =
    flags.progress === 'auto' ? (process.stdout.isTTY ? 'bar' : 'text') : flags.progress;
  const controller = new AbortController();
  using _trap = trapInterrupts(controller, (line) => void process.stderr.write(`\nfanout: ${line}\n`));
  try {
    const summary = await runDemo({ sequentialMs, progress, signal: controller.signal });
    if (summary.fanned.manifest.status !== 'complete') {
      throw new CliError(`the fanned-out run ended ${summary.fanned.manifest.status}, expected complete`);
    }
    return EXIT.OK;
  } catch (error) {
    if (controller.signal.aborted) return EXIT.PARTIAL;
    throw error;
  }
}
