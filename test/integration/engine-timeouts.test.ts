// Each deadline fires with its own code, and connection faults become CONNECTION; undici errors map by code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fanOut } from '../../functions/core/engine.ts';
import type { ErrorCode } from '../../functions/core/errors.ts';
import { toAttemptFailure } from '../../functions/core/http.ts';
import type { Outcome } from '../../functions/core/types.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const runtime = { allow: ['127.0.0.1'] };
let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});

async function only(url: string, options: Record<string, unknown>): Promise<Outcome> {
  const all: Outcome[] = [];
  for await (const outcome of fanOut([url], { retries: { maxAttempts: 1 }, ...options }, runtime))
    all.push(outcome);
  expect(all).toHaveLength(1);
  return all[0] as Outcome;
}

describe('timeouts', () => {
  it.each<[string, string, Record<string, number>, ErrorCode]>([
    ['a server that never answers', 'hang?hang=1', { headersMs: 150, totalMs: 5_000 }, 'TIMEOUT_HEADERS'],
    ['headers sent late', 'late?latency=2000', { headersMs: 150, totalMs: 5_000 }, 'TIMEOUT_HEADERS'],
    [
      'a body that stalls after the headers',
      'stall?bodyDelay=2000',
      { bodyMs: 150, totalMs: 5_000 },
      'TIMEOUT_BODY',
    ],
    [
      'a slow drip within the chunk gap',
      'drip?drip=40&dripMs=50',
      { bodyMs: 1_000, totalMs: 300 },
      'TIMEOUT_TOTAL',
    ],
    ['a hang under a shorter total', 'hang2?hang=1', { headersMs: 5_000, totalMs: 150 }, 'TIMEOUT_TOTAL'],
  ])('%s fails with %s', async (_name, path, timeouts, code) => {
    const outcome = await only(`${upstream.url}${path}`, { timeouts });
    expect(outcome).toMatchObject({ ok: false, attempts: 1, error: { code } });
  });
});

describe('connection faults', () => {
  it.each<[string, string]>([
    ['a reset before headers', 'reset?reset=1'],
    ['a body cut short', 'cut?truncate=5'],
  ])('%s fails with CONNECTION', async (_name, path) => {
    const outcome = await only(`${upstream.url}${path}`, {});
    expect(outcome).toMatchObject({ ok: false, error: { code: 'CONNECTION' } });
  });

  it('a refused connection fails with CONNECTION', async () => {
    const closed = await startUpstream();
    const url = `${closed.url}gone`;
    await closed.close();
    const outcome = await only(url, {});
    expect(outcome).toMatchObject({ ok: false, error: { code: 'CONNECTION' } });
  });
});

describe('error mapping by code', () => {
  it.each<[string, Record<string, unknown>, ErrorCode, boolean?]>([
    ['undici connect timeout', { code: 'UND_ERR_CONNECT_TIMEOUT' }, 'TIMEOUT_CONNECT'],
    ['undici headers timeout', { code: 'UND_ERR_HEADERS_TIMEOUT' }, 'TIMEOUT_HEADERS'],
    ['undici body timeout', { code: 'UND_ERR_BODY_TIMEOUT' }, 'TIMEOUT_BODY'],
    ['undici socket error', { code: 'UND_ERR_SOCKET' }, 'CONNECTION'],
    ['undici content-length mismatch', { code: 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' }, 'CONNECTION'],
    ['undici max size', { code: 'UND_ERR_RES_EXCEEDED_MAX_SIZE' }, 'BODY_TOO_LARGE'],
    ['undici destroyed', { code: 'UND_ERR_DESTROYED' }, 'ABORTED'],
    ['a reset', { code: 'ECONNRESET' }, 'CONNECTION'],
    ['a refusal', { code: 'ECONNREFUSED' }, 'CONNECTION'],
    ['a parser error', { code: 'HPE_INVALID_CONSTANT' }, 'CONNECTION'],
    ['a name that does not exist', { code: 'ENOTFOUND' }, 'DNS'],
    ['a resolver hiccup', { code: 'EAI_AGAIN' }, 'DNS', true],
    ['the guard blocking', { itemCode: 'BLOCKED_DESTINATION' }, 'BLOCKED_DESTINATION'],
    ['the guard failing DNS for now', { itemCode: 'DNS', temporary: true }, 'DNS', true],
    ['a zlib error', { code: 'Z_DATA_ERROR' }, 'BAD_CONTENT'],
    ['anything else', { code: 'EWHATEVER' }, 'CONNECTION'],
  ])('%s -> %s', (_name, fields, code, temporary) => {
    const failure = toAttemptFailure(Object.assign(new Error('boom'), fields));
    expect(failure.error.code).toBe(code);
    expect(failure.temporary === true).toBe(temporary === true);
  });
});
