// The built-in transforms on fixtures, the JSON error position, and the transform name check.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { JobValidationError } from '../../functions/core/errors.ts';
import { autoTransform } from '../../functions/core/transforms/auto.ts';
import { assertKnownTransform, transformNames } from '../../functions/core/transforms/catalog.ts';
import { digestTransform } from '../../functions/core/transforms/digest.ts';
import { htmlTransform } from '../../functions/core/transforms/html.ts';
import { applyCheapTransform, applyTransform } from '../../functions/core/transforms/inline.ts';
import { jsonTransform } from '../../functions/core/transforms/json.ts';
import { jsonErrorOffset } from '../../functions/core/transforms/json-position.ts';
import { rawTransform } from '../../functions/core/transforms/raw.ts';
import type { FetchedResponse } from '../../functions/core/types.ts';

const FIXTURES = new URL('../fixtures/transforms/', import.meta.url);

function fixture(file: string, contentType: string | null, url = 'https://shop.example/fr/index.html') {
  return respond(new Uint8Array(readFileSync(new URL(file, FIXTURES))), contentType, url);
}

function text(body: string, contentType: string | null, url = 'https://shop.example/'): FetchedResponse {
  return respond(new TextEncoder().encode(body), contentType, url);
}

function respond(body: Uint8Array, contentType: string | null, url: string): FetchedResponse {
  return {
    itemId: 'item-1',
    url,
    status: 200,
    headers: contentType === null ? {} : { 'content-type': contentType },
    body,
  };
}

function thrown(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  throw new Error('expected a throw');
}

describe('raw', () => {
  it('returns UTF-8 text with status and content type', () => {
    expect(rawTransform(text('héllo', 'text/plain; charset=utf-8'), {})).toEqual({
      status: 200,
      contentType: 'text/plain; charset=utf-8',
      encoding: 'text',
      charset: 'utf-8',
      body: 'héllo',
    });
  });

  it('decodes the charset the content type declares (windows-1252)', () => {
    const value = rawTransform(fixture('latin1.txt.fixture', 'text/plain; charset="ISO-8859-1"'), {});
    expect(value).toMatchObject({
      encoding: 'text',
      charset: 'iso-8859-1',
      body: 'Prix: 5 € — crème brûlée, naïve',
    });
  });

  it.each([
    ['a binary content type', 'image/png'],
    ['bytes that are not valid UTF-8', null],
    ['an unknown charset label', 'text/plain; charset=x-unheard-of'],
  ])('falls back to base64 for %s', (_case, contentType) => {
    const value = rawTransform(fixture('binary.bin.fixture', contentType), {});
    expect(value).toMatchObject({ encoding: 'base64', body: 'iVBORw0KGgr/AP4=' });
  });

  it('rejects options it does not take', () => {
    expect(thrown(() => rawTransform(text('x', null), { pretty: true }))).toMatch(/takes no options/);
  });
});

describe('json', () => {
  const data = () => fixture('data.json.fixture', 'application/json');

  it('parses the whole document', () => {
    expect(jsonTransform(data(), {})).toMatchObject({ meta: { count: 2 } });
  });

  it('projects JSON Pointers, escaped tokens included, keyed by pointer; a missing path is null', () => {
    const value = jsonTransform(data(), {
      select: ['/items/1/name', '/meta/a~1b', '/meta/m~0n', '/items/9', '/items/x', ''],
    });
    expect(value).toEqual({
      '/items/1/name': 'beta',
      '/meta/a~1b': 1,
      '/meta/m~0n': 2,
      '/items/9': null,
      '/items/x': null,
      '': JSON.parse(readFileSync(new URL('data.json.fixture', FIXTURES), 'utf8')),
    });
  });

  it('projects a JMESPath expression', () => {
    expect(jsonTransform(data(), { jmespath: 'items[?length(tags) > `0`].name' })).toEqual(['alpha']);
  });

  it('names line and column of malformed JSON', () => {
    expect(thrown(() => jsonTransform(fixture('malformed.json.fixture', 'application/json'), {}))).toBe(
      'body is not JSON: Expected double-quoted property name at position 28 (line 3 column 14)',
    );
  });

  it('names the position where V8 does not (an unexpected token)', () => {
    expect(thrown(() => jsonTransform(text('{"a": tru}', 'application/json'), {}))).toBe(
      "body is not JSON: Unexpected token '}' at position 9 (line 1 column 10)",
    );
    expect(thrown(() => jsonTransform(text('<html>', null), {}))).toMatch(
      /at position 0 \(line 1 column 1\)$/,
    );
  });

  it('refuses bytes that are not UTF-8, but decodes them in a declared charset', () => {
    expect(thrown(() => jsonTransform(fixture('not-utf8.json.fixture', 'application/json'), {}))).toBe(
      'body is not valid utf-8 text, so not JSON',
    );
    expect(
      jsonTransform(fixture('not-utf8.json.fixture', 'application/json; charset=iso-8859-1'), {}),
    ).toEqual({
      name: 'café',
    });
  });

  it.each([
    [{ select: '/a' }, 'options.select: must be a non-empty array'],
    [{ select: ['a/b'] }, 'options.select[0]: "a/b" is not a JSON Pointer'],
    [{ jmespath: 'items[' }, 'options.jmespath: invalid JMESPath'],
    [{ select: ['/a'], jmespath: 'a' }, 'options.select: give select or jmespath, not both'],
    [{ path: '/a' }, 'options: unknown key path'],
  ])('rejects options %j', (options, message) => {
    expect(thrown(() => jsonTransform(data(), options))).toContain(message);
  });
});

describe('content type and charset (shared between responses)', () => {
  it('answers each response by its own header when headers alternate', () => {
    const latin1 = new Uint8Array([0x22, 0xe9, 0x22]); // "é" in ISO-8859-1: invalid UTF-8
    const asLatin1 = () => respond(latin1, 'application/json; charset=ISO-8859-1', 'https://a.example/');
    const asUtf8 = () => respond(latin1, 'application/json', 'https://a.example/');
    for (let round = 0; round < 2; round++) {
      expect(jsonTransform(asLatin1(), {})).toBe('é');
      expect(thrown(() => jsonTransform(asUtf8(), {}))).toMatch(/not valid utf-8/);
      expect(autoTransform(text('{"a":1}', 'application/json'), {})).toEqual({ a: 1 });
      expect(autoTransform(text('<p>hi</p>', 'text/html'), {})).toMatchObject({ encoding: 'text' });
    }
  });

  it('takes the first of two charset parameters', () => {
    const latin1 = new Uint8Array([0x22, 0xe9, 0x22]);
    const response = respond(
      latin1,
      'application/json; charset=iso-8859-1; charset=utf-8',
      'https://a.example/',
    );
    expect(jsonTransform(response, {})).toBe('é');
  });

  it('keeps strict and lenient decoding apart for the same charset', () => {
    // <title>a\xffb</title>: 0xff is never valid UTF-8.
    const invalid = new Uint8Array([
      ...new TextEncoder().encode('<title>a'),
      0xff,
      ...new TextEncoder().encode('b</title>'),
    ]);
    const page = () => respond(invalid, 'text/html; charset=utf-8', 'https://a.example/');
    expect(
      thrown(() =>
        jsonTransform(respond(invalid, 'application/json; charset=utf-8', 'https://a.example/'), {}),
      ),
    ).toMatch(/not valid utf-8/);
    expect(htmlTransform(page(), {})).toMatchObject({ title: 'a\uFFFDb' });
    expect(
      thrown(() =>
        jsonTransform(respond(invalid, 'application/json; charset=utf-8', 'https://a.example/'), {}),
      ),
    ).toMatch(/not valid utf-8/);
  });
});

describe('html', () => {
  it('reads title, description, canonical, lang, links and visible words', () => {
    expect(htmlTransform(fixture('page.html.fixture', 'text/html; charset=utf-8'), {})).toEqual({
      title: 'Les prix du jour',
      description: 'Tous les prix, mis à jour.',
      // Resolved against <base href="/catalogue/">, not the page URL.
      canonical: 'https://shop.example/catalogue/prix?page=1',
      lang: 'fr-CA',
      // item/1 twice (fragment dropped), mailto:, javascript: and #top left out.
      links: ['https://shop.example/catalogue/item/1', 'https://other.example/x'],
      // Prix Café crème l’été trois euros un un encore ailleurs courriel haut rien (no script, style, noscript).
      wordCount: 13,
    });
  });

  it('still reads broken markup', () => {
    expect(htmlTransform(fixture('broken.html.fixture', 'text/html'), {})).toEqual({
      title: 'Broken <i>page',
      description: 'unquoted',
      canonical: null,
      lang: null,
      links: ['https://shop.example/a', 'https://shop.example/b'],
      wordCount: 17,
    });
  });

  it('finds a non-UTF-8 charset by the <meta charset> prescan (windows-1251)', () => {
    expect(htmlTransform(fixture('cyrillic.html.fixture', 'text/html'), {})).toMatchObject({
      title: 'Привет мир',
      lang: 'ru',
      wordCount: 6,
    });
  });

  it.each([
    [
      'a <meta> that says utf-16 (read as UTF-8)',
      Buffer.from('<meta charset="utf-16"><title>café</title>'),
      'text/html',
    ],
    [
      'a UTF-8 BOM over the declared charset',
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<title>café</title>')]),
      'text/html; charset=windows-1252',
    ],
    [
      'a UTF-16LE BOM with no charset declared',
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('<title>café</title>', 'utf16le')]),
      'text/html',
    ],
    [
      'the <meta> charset when the declared one is unknown',
      Buffer.from('<meta charset="iso-8859-1"><title>caf\xe9</title>', 'latin1'),
      'text/html; charset=bogus',
    ],
  ])("decodes by the HTML standard's order: %s", (_case, bytes, contentType) => {
    expect(
      htmlTransform(respond(new Uint8Array(bytes), contentType, 'https://shop.example/'), {}),
    ).toMatchObject({
      title: 'café',
    });
  });
});

describe('digest', () => {
  it('returns the SHA-256 and the size', () => {
    expect(digestTransform(text('abc', null), {})).toEqual({
      sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
      bytes: 3,
    });
  });
});

describe('auto', () => {
  it.each([
    ['declared JSON', '[1,2]', 'application/problem+json', [1, 2]],
    ['undeclared JSON', ' {"a":1}', null, { a: 1 }],
  ])('parses %s', (_case, body, contentType, expected) => {
    expect(autoTransform(text(body, contentType), {})).toEqual(expected);
  });

  it.each([
    ['HTML', '<p>hi</p>', 'text/html'],
    ['undeclared text that only looks like JSON', '{not json', null],
  ])('returns %s as raw', (_case, body, contentType) => {
    expect(autoTransform(text(body, contentType), {})).toMatchObject({ encoding: 'text', body });
  });

  it('holds a server that declares JSON to it', () => {
    expect(thrown(() => autoTransform(text('{oops', 'application/json'), {}))).toMatch(/^body is not JSON/);
  });
});

describe('applyTransform', () => {
  it('turns a throw into TRANSFORM_ERROR and undefined into null', async () => {
    const body = text('x', null);
    await expect(applyTransform(() => JSON.parse('{'), body, {})).resolves.toMatchObject({
      ok: false,
      code: 'TRANSFORM_ERROR',
    });
    await expect(applyTransform(() => undefined, body, {})).resolves.toEqual({ ok: true, value: null });
  });
});

describe('applyCheapTransform', () => {
  it('runs a cheap built-in synchronously and declines the others', () => {
    // The whole body's text comes along (the store writes it as received); a projection has none.
    expect(applyCheapTransform('json', text(' [1]', 'application/json'), {})).toEqual({
      ok: true,
      value: [1],
      json: ' [1]',
    });
    expect(applyCheapTransform('json', text('{"a":[1]}', 'application/json'), { select: ['/a'] })).toEqual({
      ok: true,
      value: { '/a': [1] },
    });
    expect(applyCheapTransform('raw', text('[1]', 'text/plain'), {})).not.toHaveProperty('json');
    expect(applyCheapTransform('json', text('[1', 'application/json'), {})).toMatchObject({
      ok: false,
      code: 'TRANSFORM_ERROR',
    });
    expect(applyCheapTransform('html', text('<p>', 'text/html'), {})).toBeUndefined();
    expect(applyCheapTransform('top-words', text('a', null), {})).toBeUndefined();
  });
});

describe('jsonErrorOffset', () => {
  it.each([
    '{"a":1,}',
    '{"a":1',
    '[1,2] x',
    '{"a" 1}',
    '"tab\tinside"',
    '01',
    '{"a":1}}',
    '"\\x"',
    '"\\u12g4"',
  ])('agrees with V8 on %j', (input) => {
    let v8Position = -1;
    try {
      JSON.parse(input);
    } catch (error) {
      v8Position = Number(/at position (\d+)/.exec((error as Error).message)?.[1] ?? Number.NaN);
    }
    expect(jsonErrorOffset(input)).toBe(v8Position);
  });

  it.each(['{}', '[]', ' 12 ', '{"a":[1,{"b":null}],"c":"x\\u00e9"}', '[true,false,null,-1.5e3]'])(
    'finds no error in %j',
    (input) => {
      expect(jsonErrorOffset(input)).toBe(-1);
    },
  );

  it('survives nesting deeper than the call stack', () => {
    expect(jsonErrorOffset(`${'['.repeat(200_000)}x`)).toBe(200_000);
  });
});

describe('transform name check', () => {
  it('lists the built-ins, then the user transforms', () => {
    expect(transformNames()).toEqual(['auto', 'digest', 'html', 'json', 'raw', 'top-words']);
  });

  it('rejects an unknown name at options.transform.name, listing the known ones', () => {
    let caught: unknown;
    try {
      assertKnownTransform({ name: 'jsno', options: {} });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(JobValidationError);
    expect((caught as JobValidationError).issues).toEqual([
      {
        path: 'options.transform.name',
        message: 'unknown transform "jsno"; known: auto, digest, html, json, raw, top-words',
      },
    ]);
  });

  it.each([
    [{ name: 'json', options: { select: ['nope'] } }, 'options.transform.options.select[0]'],
    [{ name: 'json', options: { jmespath: '[' } }, 'options.transform.options.jmespath'],
    [{ name: 'html', options: { links: false } }, 'options.transform.options'],
  ])('rejects bad built-in options %j at %s', (spec, path) => {
    expect(() => assertKnownTransform(spec)).toThrow(JobValidationError);
    try {
      assertKnownTransform(spec);
    } catch (error) {
      expect((error as JobValidationError).issues[0]?.path).toBe(path);
    }
  });

  it('accepts known names; user transforms check their own options', () => {
    expect(() => assertKnownTransform({ name: 'json', options: { select: ['/a'] } })).not.toThrow();
    expect(() => assertKnownTransform({ name: 'top-words', options: { top: 3 } })).not.toThrow();
  });

  it('refuses a user registry that shadows a built-in', () => {
    const registry = { json: () => Promise.resolve({ default: () => 1 }) };
    expect(() => transformNames(registry)).toThrow(/shadow a built-in/);
  });

  it('loads no HTML parser, no user transform and no piscina to check a name', async () => {
    const poolUrl = new URL('../../functions/core/pool.ts', import.meta.url).href;
    const script = `
      import { registerHooks } from 'node:module';
      const loaded = [];
      registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
      const pool = await import(${JSON.stringify(poolUrl)});
      pool.assertKnownTransform({ name: 'top-words', options: {} });
      console.log(JSON.stringify(loaded));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
    });
    const loaded = JSON.parse(stdout) as string[];
    expect(loaded.some((url) => url.endsWith('/functions/core/transforms/catalog.ts'))).toBe(true);
    expect(loaded.filter((url) => /htmlparser2|top-words|piscina|transforms\/html\.ts/.test(url))).toEqual(
      [],
    );
  });
});
