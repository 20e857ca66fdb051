// Transform names and built-in options, checked before any fetch; cheap: loads no parser, no user code.
import { userTransforms } from '../../transforms/index.ts';
import { type JobIssue, JobValidationError } from '../errors.ts';
import type { TransformSpec } from '../job.ts';
import type { UserTransformRegistry } from './contract.ts';
import { OptionError, parseJsonOptions } from './json.ts';

export const BUILTIN_TRANSFORMS = ['auto', 'digest', 'html', 'json', 'raw'] as const;
export type BuiltinTransform = (typeof BUILTIN_TRANSFORMS)[number];

const NAME_PATH = 'options.transform.name';
const OPTIONS_PATH = 'options.transform.options';

export function isBuiltinTransform(name: string): name is BuiltinTransform {
  return (BUILTIN_TRANSFORMS as readonly string[]).includes(name);
}

/** Every transform a job may name: the built-ins, then the user registry, sorted. */
export function transformNames(registry: UserTransformRegistry = userTransforms): string[] {
  const user = Object.keys(registry);
  const shadowing = user.filter(isBuiltinTransform);
  // A deployment mistake, not a job's: fail loudly rather than run a different transform than named.
  if (shadowing.length > 0) {
    throw new Error(
      `functions/transforms/index.ts: ${shadowing.join(', ')} would shadow a built-in transform`,
    );
  }
  return [...BUILTIN_TRANSFORMS, ...user.sort()];
}

/**
 * Throws JobValidationError when a job names an unknown transform or gives a built-in bad options
 * (`options.transform.name: unknown transform "x"; known: auto, digest, ...`). Nothing is fetched
 * for such a job. User transforms validate their own options when they run.
 */
export function assertKnownTransform(
  spec: Pick<TransformSpec, 'name'> & { options?: Record<string, unknown> },
  registry: UserTransformRegistry = userTransforms,
): void {
  const names = transformNames(registry);
  if (!names.includes(spec.name)) {
    throw new JobValidationError([
      { path: NAME_PATH, message: `unknown transform "${spec.name}"; known: ${names.join(', ')}` },
    ]);
  }
  if (!isBuiltinTransform(spec.name)) return;
  const options = spec.options ?? {};
  const issues: JobIssue[] = [];
  if (spec.name === 'json') {
    try {
      parseJsonOptions(options);
    } catch (error) {
      if (!(error instanceof OptionError)) throw error;
      const path = error.key ? `${OPTIONS_PATH}.${error.key}` : OPTIONS_PATH;
      issues.push({ path, message: error.message.replace(/^options(\.\S+)?: /, '') });
    }
  } else if (Object.keys(options).length > 0) {
    issues.push({ path: OPTIONS_PATH, message: `"${spec.name}" takes no options` });
  }
  if (issues.length > 0) throw new JobValidationError(issues);
}
