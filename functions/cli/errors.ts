// How the CLI fails: one line on stderr and an exit code, the codes of `fanout run` named once.
import type { Manifest } from '../core/index.ts';

/** DESIGN.md "The CLI": 0 complete and clean, 3 complete with failed items, 2 partial, 1 bad input or fatal. */
export const EXIT = {
  OK: 0,
  FATAL: 1,
  PARTIAL: 2,
  COMPLETE_WITH_FAILURES: 3,
  /** 128 + SIGINT, the shell convention for a second Ctrl-C that does not wait. */
  INTERRUPTED: 130,
} as const;

/** An expected failure: `message` is printed as one line after "fanout: ", then the process exits. */
export class CliError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode: number = EXIT.FATAL) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** The exit code a manifest stands for; a rerun of a complete job exits the same way. */
export function exitCodeFor(manifest: Pick<Manifest, 'status' | 'counts'>): number {
  switch (manifest.status) {
    case 'complete':
      return manifest.counts.failed > 0 ? EXIT.COMPLETE_WITH_FAILURES : EXIT.OK;
    case 'partial':
    case 'running':
      return EXIT.PARTIAL;
    case 'failed':
      return EXIT.FATAL;
    default: {
      const unknown: never = manifest.status;
      throw new CliError(`manifest has an unknown status ${String(unknown)}`);
    }
  }
}

interface IssueLike {
  path: string;
  message: string;
}

/** Shown on one line however many issues a job has: the first few, then how many more. */
const MAX_ISSUES_SHOWN = 3;

/**
 * One line for anything thrown: a rejected job names each path (`items[3].url: invalid URL`), an error with
 * a code keeps it, and a multi-line message is folded so stderr stays one line per failure.
 */
export function oneLine(error: unknown, context?: string): string {
  const prefix = context ? `${context}: ` : '';
  if (isValidationError(error)) {
    const shown = error.issues
      .slice(0, MAX_ISSUES_SHOWN)
      .map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message));
    const more = error.issues.length - shown.length;
    return `${prefix}invalid job: ${shown.join('; ')}${more > 0 ? ` (and ${more} more)` : ''}`;
  }
  if (error instanceof CliError) return `${prefix}${fold(error.message)}`;
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    const label = typeof code === 'string' && !error.message.includes(code) ? `${code}: ` : '';
    return `${prefix}${label}${fold(error.message)}`;
  }
  return `${prefix}${fold(String(error))}`;
}

/** Matched by shape, not instanceof: the class may come from another copy of the module (a worker, a shard). */
function isValidationError(error: unknown): error is Error & { issues: readonly IssueLike[] } {
  return (
    error instanceof Error &&
    (error as Error & { code?: unknown }).code === 'INVALID_JOB' &&
    Array.isArray((error as Error & { issues?: unknown }).issues)
  );
}

function fold(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
