// The default `auto` transform: a declared or evidently JSON body parsed, anything else as `raw`.
import type { FetchedResponse } from '../types.ts';
import { parseJsonBody } from './json.ts';
import { assertNoOptions, rawTransform } from './raw.ts';
import { isJsonType, parseContentType } from './text.ts';

export function autoTransform(response: FetchedResponse, options: Record<string, unknown>): unknown {
  assertNoOptions('auto', options);
  const { essence } = parseContentType(response.headers);
  // A server that says JSON is held to it: a malformed body is an item error, not silently text.
  if (isJsonType(essence)) return parseJsonBody(response);
  if ((essence === null || essence === 'text/plain') && looksLikeJson(response.body)) {
    try {
      return parseJsonBody(response);
    } catch {
      // Undeclared and not JSON after all: it is just text.
    }
  }
  return rawTransform(response, {});
}

function looksLikeJson(body: Uint8Array): boolean {
  for (const byte of body) {
    if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
    return byte === 0x7b || byte === 0x5b; // { or [
  }
  return false;
}
