// Content type and charset: which bytes are text, and decoding them with the charset the server declared.
import { TextDecoder } from 'node:util';

export interface MediaType {
  /** Lower-cased `type/subtype`, or null when the header is absent or empty. */
  readonly essence: string | null;
  /** The declared charset label, lower-cased, or null. */
  readonly charset: string | null;
}

const NO_MEDIA_TYPE: MediaType = Object.freeze({ essence: null, charset: null });
/** The last header parsed and its result: a job's responses mostly repeat one content-type. */
let lastContentType = '';
let lastMediaType: MediaType = NO_MEDIA_TYPE;

export function parseContentType(headers: Record<string, string>): MediaType {
  const value = headerValue(headers, 'content-type');
  if (!value) return NO_MEDIA_TYPE;
  if (value === lastContentType) return lastMediaType;
  const [essence = '', ...params] = value.split(';');
  let charset: string | null = null;
  for (const param of params) {
    const eq = param.indexOf('=');
    // The first charset parameter counts (RFC 9110 §5.6.6): a later one does not override it.
    if (charset !== null || eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    charset = param
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
  }
  lastContentType = value;
  lastMediaType = Object.freeze({ essence: essence.trim().toLowerCase() || null, charset: charset || null });
  return lastMediaType;
}

/** Header names arrive lower-cased from undici, but a library caller may not know that. */
export function headerValue(headers: Record<string, string>, name: string): string | undefined {
  const direct = headers[name];
  if (direct !== undefined) return direct;
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name) return headers[key];
  return undefined;
}

export function isJsonType(essence: string | null): boolean {
  return essence !== null && (essence === 'application/json' || essence.endsWith('+json'));
}

const BINARY_TYPES = /^(image|audio|video|font)\/|^application\/(octet-stream|pdf|zip|gzip|x-tar|wasm)$/;

/** Types whose bytes are never text, however they happen to decode. */
export function isBinaryType(essence: string | null): boolean {
  return essence !== null && BINARY_TYPES.test(essence);
}

/** Decoders by fatal flag and label; bounded, since labels come from servers. */
const decoders = new Map<string, TextDecoder | null>();
const MAX_DECODERS = 64;

/**
 * A decoder for a declared charset, or null when Node does not know the label. `fatal` makes invalid
 * bytes an error instead of U+FFFD: right for JSON and for deciding text vs base64. Shared: decode()
 * without `stream` keeps no state between calls, and building one per response cost ~1 µs.
 */
export function decoderFor(charset: string | null, fatal: boolean): TextDecoder | null {
  const key = `${fatal ? 'f' : 'r'}${charset === null ? '' : `=${charset}`}`;
  let decoder = decoders.get(key);
  if (decoder !== undefined) return decoder;
  try {
    decoder = new TextDecoder(charset ?? 'utf-8', { fatal });
  } catch {
    decoder = null;
  }
  if (decoders.size >= MAX_DECODERS) decoders.clear();
  decoders.set(key, decoder);
  return decoder;
}

/** Decodes strictly; null when the bytes are not valid in the charset (or the label is unknown). */
export function decodeStrict(body: Uint8Array, charset: string | null): string | null {
  const decoder = decoderFor(charset, true);
  if (!decoder) return null;
  try {
    return decoder.decode(body);
  } catch {
    return null;
  }
}
