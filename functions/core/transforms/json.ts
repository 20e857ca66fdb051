// The `json` transform: parse the body strictly, optionally project it by JSON Pointer or JMESPath.
import * as jmespath from 'jmespath';
import type { FetchedResponse } from '../types.ts';
import { describeOffset, jsonErrorOffset } from './json-position.ts';
import { decodeStrict, parseContentType } from './text.ts';

/** `select`: RFC 6901 pointers, the result keyed by pointer; `jmespath`: one expression. Not both. */
export type JsonOptions =
  | { kind: 'whole' }
  | { kind: 'pointers'; pointers: string[][]; select: string[] }
  | { kind: 'jmespath'; expression: string };

// @types/jmespath declares only `search`; `compile` (parse without evaluating) is in the package too.
const compileJmespath = (jmespath as unknown as { compile(expression: string): unknown }).compile;

/** Validates the options of `json`; throws an Error naming the bad key (catalog.ts maps it to a path). */
export function parseJsonOptions(options: Record<string, unknown>): JsonOptions {
  const unknown = Object.keys(options).filter((key) => key !== 'select' && key !== 'jmespath');
  if (unknown.length > 0)
    throw new OptionError('', `unknown key ${unknown.join(', ')} (known: select, jmespath)`);
  const { select, jmespath: expression } = options;
  if (select !== undefined && expression !== undefined) {
    throw new OptionError('select', 'give select or jmespath, not both');
  }
  if (select !== undefined) {
    if (
      !Array.isArray(select) ||
      select.length === 0 ||
      select.some((pointer) => typeof pointer !== 'string')
    ) {
      throw new OptionError('select', 'must be a non-empty array of JSON Pointers like "/data/0/id"');
    }
    const pointers = (select as string[]).map((pointer, index) => {
      const tokens = parsePointer(pointer);
      if (!tokens) throw new OptionError(`select[${index}]`, `"${pointer}" is not a JSON Pointer (RFC 6901)`);
      return tokens;
    });
    return { kind: 'pointers', pointers, select: select as string[] };
  }
  if (expression !== undefined) {
    if (typeof expression !== 'string' || expression.trim() === '') {
      throw new OptionError('jmespath', 'must be a JMESPath expression string');
    }
    try {
      compileJmespath(expression);
    } catch (error) {
      throw new OptionError(
        'jmespath',
        `invalid JMESPath: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    return { kind: 'jmespath', expression };
  }
  return { kind: 'whole' };
}

/** An option problem at `key` (relative to the transform's options). */
export class OptionError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(key ? `options.${key}: ${message}` : `options: ${message}`);
    this.name = 'OptionError';
    this.key = key;
  }
}

export function jsonTransform(response: FetchedResponse, options: Record<string, unknown>): unknown {
  const parsedOptions = parseJsonOptions(options);
  const document = parseJsonBody(response);
  switch (parsedOptions.kind) {
    case 'whole':
      return document;
    case 'pointers': {
      const out: Record<string, unknown> = {};
      parsedOptions.pointers.forEach((tokens, index) => {
        // A missing path is null, not absent, so every result line has the same keys.
        out[parsedOptions.select[index] ?? ''] = resolvePointer(document, tokens) ?? null;
      });
      return out;
    }
    case 'jmespath':
      return jmespath.search(document as never, parsedOptions.expression) ?? null;
    default:
      return parsedOptions satisfies never;
  }
}

/**
 * The last body parsed whole: its value and the text it came from. A transform that returns that very
 * value (json without select/jmespath, auto on a JSON body) has the exact text at hand, so the store can
 * write it as received instead of re-serializing the value (see takeExactJson). Set and read within one
 * synchronous transform call on this thread.
 */
let lastParsedValue: unknown;
let lastParsedText: string | undefined;

/**
 * The JSON text `value` was parsed from, when it is the whole body parsed by the transform that just ran;
 * else undefined. Clears what it read.
 */
export function takeExactJson(value: unknown): string | undefined {
  const text = value === lastParsedValue ? lastParsedText : undefined;
  lastParsedValue = undefined;
  lastParsedText = undefined;
  return text;
}

/** Decodes (declared charset, else UTF-8, strictly) and parses; errors name the position. */
export function parseJsonBody(response: FetchedResponse): unknown {
  const { charset } = parseContentType(response.headers);
  const text = decodeStrict(response.body, charset);
  if (text === null) {
    throw new Error(`body is not valid ${charset ?? 'utf-8'} text, so not JSON`);
  }
  try {
    const value: unknown = JSON.parse(text);
    lastParsedValue = value;
    lastParsedText = text;
    return value;
  } catch (error) {
    const offset = jsonErrorOffset(text);
    // V8's message quotes the body; the item error keeps only the reason and our exact position.
    const reason = (error instanceof Error ? error.message : 'invalid JSON')
      .replace(/, ".*" is not valid JSON$/s, '')
      .replace(/ in JSON at position \d+.*$/s, '');
    const where = offset >= 0 ? describeOffset(text, offset) : 'at an unknown position';
    throw new Error(`body is not JSON: ${reason} ${where}`);
  }
}

function parsePointer(pointer: string): string[] | null {
  if (pointer === '') return [];
  if (!pointer.startsWith('/') || /~[^01]|~$/.test(pointer)) return null;
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function resolvePointer(document: unknown, tokens: readonly string[]): unknown {
  let current: unknown = document;
  for (const token of tokens) {
    if (Array.isArray(current)) {
      if (!/^(0|[1-9]\d*)$/.test(token)) return undefined;
      current = current[Number(token)];
    } else if (typeof current === 'object' && current !== null && Object.hasOwn(current, token)) {
      current = (current as Record<string, unknown>)[token];
    } else {
      return undefined;
    }
  }
  return current;
}
