// The `raw` transform: the body as text in its declared charset, or base64 when it is not text.
import type { FetchedResponse } from '../types.ts';
import { decodeStrict, headerValue, isBinaryType, parseContentType } from './text.ts';

export type RawValue =
  | { status: number; contentType: string | null; encoding: 'text'; charset: string; body: string }
  | { status: number; contentType: string | null; encoding: 'base64'; body: string };

export function rawTransform(response: FetchedResponse, options: Record<string, unknown>): RawValue {
  assertNoOptions('raw', options);
  const contentType = headerValue(response.headers, 'content-type') ?? null;
  const { essence, charset } = parseContentType(response.headers);
  if (!isBinaryType(essence)) {
    // Strict decoding: bytes that are not valid in the charset are not text, so they go base64.
    const text = decodeStrict(response.body, charset);
    if (text !== null) {
      return {
        status: response.status,
        contentType,
        encoding: 'text',
        charset: charset ?? 'utf-8',
        body: text,
      };
    }
  }
  const body = Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength);
  return { status: response.status, contentType, encoding: 'base64', body: body.toString('base64') };
}

export function assertNoOptions(name: string, options: Record<string, unknown>): void {
  const keys = Object.keys(options);
  if (keys.length > 0) throw new Error(`options: "${name}" takes no options (got ${keys.join(', ')})`);
}
