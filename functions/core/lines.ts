// The lines of results and errors parts, built as text (the same text JSON.stringify would give).
import { exactJsonOf } from './engine.ts';
import type { SourceLine } from './job.ts';
import type { FailedOutcome, SucceededOutcome } from './types.ts';

/**
 * A succeeded outcome as a results line in pieces: `head`, the value's JSON, then `}` (the joined line is
 * never built). A whole JSON body goes in as the origin wrote it (exactJsonOf: no precision lost, no
 * re-serializing). A value JSON cannot hold (a BigInt, a cycle: both cross a worker boundary) makes an
 * errors line instead: that item fails TRANSFORM_ERROR, not the job.
 */
export function succeededLine(
  outcome: SucceededOutcome,
): { kind: 'results'; head: string; value: string } | { kind: 'errors'; line: string } {
  const exact = exactJsonOf(outcome);
  if (exact !== undefined) return { kind: 'results', head: resultHead(outcome), value: oneLine(exact) };
  try {
    const value = JSON.stringify(outcome.value ?? null) ?? 'null';
    return { kind: 'results', head: resultHead(outcome), value };
  } catch (error) {
    const { id, url, attempts, ms } = outcome;
    const message = `the transform's value is not JSON: ${error instanceof Error ? error.message : String(error)}`;
    return {
      kind: 'errors',
      line: errorLine({ id, url, ok: false, error: { code: 'TRANSFORM_ERROR', message }, attempts, ms }),
    };
  }
}

/**
 * `{"id","url","status","attempts","ms","value":` : the head of a result line. Head + the value's JSON +
 * `}` is the same text as JSON.stringify of `{id, url, status, attempts, ms, value}`, built without the
 * object. The id leads, for idOfLine.
 */
function resultHead(outcome: SucceededOutcome): string {
  return `{"id":${JSON.stringify(outcome.id)},"url":${JSON.stringify(outcome.url)},"status":${jsonNumber(outcome.status)},"attempts":${jsonNumber(outcome.attempts)},"ms":${jsonNumber(outcome.ms)},"value":`;
}

/** `{"id","url","error":{"code","message","status"?},"attempts","ms"}`, built the same way. */
export function errorLine(outcome: FailedOutcome): string {
  const { id, url, error, attempts, ms } = outcome;
  return `{"id":${JSON.stringify(id)},"url":${JSON.stringify(url)},"error":${JSON.stringify(error)},"attempts":${jsonNumber(attempts)},"ms":${jsonNumber(ms)}}`;
}

const LINE_BREAK = /[\r\n]/g;

/** Valid JSON text on one line: its line breaks can only be whitespace between tokens, so spaces do as well. */
function oneLine(json: string): string {
  return json.includes('\n') || json.includes('\r') ? json.replace(LINE_BREAK, ' ') : json;
}

/** The errors line of a source line that is not an item (its id is the line's). */
export function badLineRecord(parsed: Extract<SourceLine, { ok: false }>): string {
  return JSON.stringify({ id: parsed.id, url: parsed.url, error: parsed.error, attempts: 0, ms: 0 });
}

/** A number as JSON.stringify writes it (NaN and the infinities as null). */
function jsonNumber(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}
