// Flags shared by several commands, and parsers for flag values (numbers, durations, lists) that reject clearly.
import { type Command, InvalidArgumentError, Option } from 'commander';

/** --bucket, --prefix: where `run` writes and `show` and `redrive` read. */
export function addStoreOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--bucket <name>', 'S3 bucket for results (default: the embedded local S3)').env(
        'FANOUT_BUCKET',
      ),
    )
    .option('--prefix <prefix>', 'key prefix in the bucket (default: "jobs")');
}

/** An integer in [min, max], for flags such as --concurrency and --port. */
export function integerIn(min: number, max: number): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(number)) {
      throw new InvalidArgumentError(`must be a whole number, got "${value}"`);
    }
    if (number < min || number > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
    return number;
  };
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** "1500" (milliseconds), "500ms", "30s", "5m", "1h", "1m30s"; returns milliseconds. */
export function parseDurationMs(value: string): number {
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  for (const match of text.matchAll(part)) {
    total += Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] ?? 1);
    matched += match[0].length;
  }
  if (text === '' || matched !== text.length) {
    throw new InvalidArgumentError(`must be milliseconds or a duration like 30s, 5m, 1m30s; got "${value}"`);
  }
  return Math.round(total);
}

/** A positive duration, for --deadline. */
export function positiveDurationMs(value: string): number {
  const ms = parseDurationMs(value);
  if (ms <= 0) throw new InvalidArgumentError('must be more than 0');
  return ms;
}

/** Comma-separated, repeatable: `--allow a,b --allow c` gives [a, b, c]. */
export function collectList(value: string, previous: string[] | undefined): string[] {
  const entries = value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  return [...(previous ?? []), ...entries];
}
