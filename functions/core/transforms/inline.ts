// The cheap built-ins, safe to run on the main thread for small bodies, and running one as a result.
import type { FetchedResponse, TransformResult } from '../types.ts';
import { autoTransform } from './auto.ts';
import { describeError, type TransformFn } from './contract.ts';
import { digestTransform } from './digest.ts';
import { jsonTransform, takeExactJson } from './json.ts';
import { rawTransform } from './raw.ts';

/** Linear in the body and allocation-light; `html` and user transforms are never here (may be CPU-heavy). */
export const CHEAP_TRANSFORMS: Readonly<Record<string, TransformFn>> = {
  auto: autoTransform,
  digest: digestTransform,
  json: jsonTransform,
  raw: rawTransform,
};

export function cheapTransform(name: string): TransformFn | undefined {
  return Object.hasOwn(CHEAP_TRANSFORMS, name) ? CHEAP_TRANSFORMS[name] : undefined;
}

/**
 * A cheap built-in run synchronously (no promise on the engine's hot path), or undefined when `name`
 * is not one of them. Whatever it throws becomes TRANSFORM_ERROR.
 */
export function applyCheapTransform(
  name: string,
  response: FetchedResponse,
  options: Record<string, unknown>,
): TransformResult | undefined {
  const transform = cheapTransform(name);
  if (!transform) return undefined;
  let value: unknown;
  let json: string | undefined;
  try {
    value = transform(response, options);
  } catch (error) {
    return { ok: false, code: 'TRANSFORM_ERROR', message: describeError(error) };
  } finally {
    // Read on every path, so no parsed body is kept past the call (takeExactJson clears it).
    json = takeExactJson(value);
  }
  if (value === undefined) return { ok: true, value: null };
  return json === undefined ? { ok: true, value } : { ok: true, value, json };
}

/** Runs a transform to a result: whatever it throws becomes TRANSFORM_ERROR, never an exception. */
export async function applyTransform(
  transform: TransformFn,
  response: FetchedResponse,
  options: Record<string, unknown>,
): Promise<TransformResult> {
  try {
    const value = await transform(response, options);
    // undefined would vanish from the JSONL line; null keeps the key.
    return { ok: true, value: value === undefined ? null : value };
  } catch (error) {
    return { ok: false, code: 'TRANSFORM_ERROR', message: describeError(error) };
  } finally {
    // A built-in run here (a worker) may have parsed a body whole: drop it rather than hold it until the next.
    takeExactJson(undefined);
  }
}
