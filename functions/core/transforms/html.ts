// The `html` transform: title, description, canonical URL, absolute links, word count and language,
// read with htmlparser2's tolerant streaming parser (broken markup still yields what it can).
import type { TextDecoder } from 'node:util';
import { Parser } from 'htmlparser2';
import type { FetchedResponse } from '../types.ts';
import { assertNoOptions } from './raw.ts';
import { decoderFor, parseContentType } from './text.ts';

export interface HtmlValue {
  title: string | null;
  description: string | null;
  /** Absolute, resolved against <base href> and the response URL. */
  canonical: string | null;
  lang: string | null;
  /** Absolute http(s) links of <a href>, fragments dropped, deduplicated, in document order. */
  links: string[];
  /** Words of visible text (script, style, template, noscript and title excluded). */
  wordCount: number;
}

/** Text in these never shows on the page. */
const HIDDEN = new Set(['script', 'style', 'template', 'noscript', 'title']);
/** Tags that do not break a word: `un<b>usual</b>` is one word. */
const INLINE = new Set([
  'a',
  'abbr',
  'b',
  'bdi',
  'bdo',
  'cite',
  'code',
  'data',
  'dfn',
  'em',
  'i',
  'kbd',
  'mark',
  'q',
  's',
  'samp',
  'small',
  'span',
  'strong',
  'sub',
  'sup',
  'time',
  'u',
  'var',
]);
const WORD = /[\p{L}\p{N}]+(?:['’.-][\p{L}\p{N}]+)*/gu;

export function htmlTransform(response: FetchedResponse, options: Record<string, unknown>): HtmlValue {
  assertNoOptions('html', options);
  const html = decodeHtml(response);
  let title: string | null = null;
  let titleText = '';
  let inTitle = false;
  let hiddenDepth = 0;
  let description: string | null = null;
  let canonicalHref: string | null = null;
  let baseHref: string | null = null;
  let lang: string | null = null;
  const hrefs: string[] = [];
  const visible: string[] = [];

  const parser = new Parser(
    {
      onopentag(name, attributes) {
        if (HIDDEN.has(name)) hiddenDepth++;
        // Broken markup may leave a <noscript> or <template> open; the body is visible regardless.
        else if (name === 'body') hiddenDepth = 0;
        if (!INLINE.has(name)) visible.push(' ');
        if (name === 'title' && title === null) inTitle = true;
        else if (name === 'html' && lang === null && attributes.lang) lang = attributes.lang.trim() || null;
        else if (name === 'base' && baseHref === null && attributes.href) baseHref = attributes.href;
        else if (
          name === 'meta' &&
          description === null &&
          attributes.name?.toLowerCase() === 'description'
        ) {
          description = collapse(attributes.content ?? '') || null;
        } else if (name === 'link' && canonicalHref === null && hasToken(attributes.rel, 'canonical')) {
          canonicalHref = attributes.href ?? null;
        } else if (name === 'a' && attributes.href !== undefined) hrefs.push(attributes.href);
      },
      ontext(text) {
        if (inTitle) titleText += text;
        else if (hiddenDepth === 0) visible.push(text);
      },
      onclosetag(name) {
        if (HIDDEN.has(name) && hiddenDepth > 0) hiddenDepth--;
        if (!INLINE.has(name)) visible.push(' ');
        if (name === 'title' && inTitle) {
          inTitle = false;
          title = collapse(titleText) || null;
        }
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.write(html);
  parser.end();
  if (inTitle) title = collapse(titleText) || null; // an unclosed <title> still names the page

  const base = (baseHref !== null ? absolute(baseHref, response.url) : null) ?? response.url;
  const links = new Set<string>();
  for (const href of hrefs) {
    const link = absolute(href, base);
    if (link !== null) links.add(link);
  }
  return {
    title,
    description,
    canonical: canonicalHref === null ? null : absolute(canonicalHref, base),
    lang,
    links: [...links],
    wordCount: visible.join('').match(WORD)?.length ?? 0,
  };
}

/**
 * The HTML standard's order, simplified: a byte-order mark, then the declared charset (if known), then a
 * <meta charset> in the first 1,024 bytes (the prescan), else UTF-8.
 */
function decodeHtml(response: FetchedResponse): string {
  const body = response.body;
  const labelled = (label: string | null): TextDecoder | null =>
    label === null ? null : decoderFor(label, false);
  const decoder =
    labelled(bomCharset(body)) ??
    labelled(parseContentType(response.headers).charset) ??
    labelled(sniffMetaCharset(body)) ??
    decoderFor(null, false);
  return decoder ? decoder.decode(body) : '';
}

function bomCharset(body: Uint8Array): string | null {
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) return 'utf-8';
  if (body[0] === 0xfe && body[1] === 0xff) return 'utf-16be';
  if (body[0] === 0xff && body[1] === 0xfe) return 'utf-16le';
  return null;
}

function sniffMetaCharset(body: Uint8Array): string | null {
  const head = Buffer.from(body.buffer, body.byteOffset, Math.min(body.byteLength, 1024)).toString('latin1');
  const match = /<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)/i.exec(head);
  const label = match?.[1]?.toLowerCase() ?? null;
  // A <meta> readable as ASCII is not UTF-16, whatever it says; x-user-defined means windows-1252.
  if (label?.startsWith('utf-16')) return 'utf-8';
  return label === 'x-user-defined' ? 'windows-1252' : label;
}

function absolute(href: string, base: string): string | null {
  const trimmed = href.trim();
  // Empty and fragment-only hrefs point at this very page: not a link worth recording.
  if (trimmed === '' || trimmed.startsWith('#')) return null;
  try {
    const url = new URL(trimmed, base);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    url.hash = '';
    return url.href;
  } catch {
    return null;
  }
}

function hasToken(list: string | undefined, token: string): boolean {
  return list?.toLowerCase().split(/\s+/).includes(token) ?? false;
}

function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
