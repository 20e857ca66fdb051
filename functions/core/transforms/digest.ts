// The `digest` transform: SHA-256 and size of the body, for change detection.
import { createHash } from 'node:crypto';
import type { FetchedResponse } from '../types.ts';
import { assertNoOptions } from './raw.ts';

export function digestTransform(
  response: FetchedResponse,
  options: Record<string, unknown>,
): { sha256: string; bytes: number } {
  assertNoOptions('digest', options);
  return {
    sha256: createHash('sha256').update(response.body).digest('hex'),
    bytes: response.body.byteLength,
  };
}
