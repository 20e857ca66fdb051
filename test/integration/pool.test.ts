// The transform pool with real worker threads: faults contained, bodies moved, backpressure, clean close.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  closeSharedTransformPool,
  createTransformPool,
  sharedTransformPool,
  type TransformPool,
  type TransformPoolOptions,
} from '../../functions/core/pool.ts';
import type { FetchedResponse, TransformResult } from '../../functions/core/types.ts';

const FIXTURE_WORKER = new URL('../fixtures/transforms/worker.ts', import.meta.url);
const never = new AbortController().signal;
const pools: TransformPool[] = [];

function pool(options: TransformPoolOptions = {}): TransformPool {
  const created = createTransformPool({
    threads: 1,
    inlineMaxBodyBytes: 0,
    workerFile: FIXTURE_WORKER,
    ...options,
  });
  pools.push(created);
  return created;
}

function response(body: Uint8Array | string = 'x', contentType = 'text/plain'): FetchedResponse {
  return {
    itemId: 'item-1',
    url: 'https://example.com/dir/page',
    status: 200,
    headers: { 'content-type': contentType },
    body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
  };
}

async function threadOf(transforms: TransformPool): Promise<number> {
  const result = await transforms.run(response(), { name: 'thread-id', options: {} }, never);
  if (!result.ok) throw new Error(`thread-id failed: ${result.message}`);
  return (result.value as { threadId: number }).threadId;
}

/** Polls a condition the workers will make true; the test timeout bounds it, no wall-time assertion. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(5);
}

afterEach(async () => {
  await Promise.all(pools.splice(0).map((created) => created.close()));
  await closeSharedTransformPool();
});

describe('transform pool', () => {
  it('runs the built-ins in a worker thread, not on the main thread', async () => {
    const transforms = pool();
    expect(await threadOf(transforms)).not.toBe(0);
    const html = '<html lang="en"><title>T</title><a href="/a">a</a> two words</html>';
    await expect(
      transforms.run(response(html, 'text/html'), { name: 'html', options: {} }, never),
    ).resolves.toEqual({
      ok: true,
      value: {
        title: 'T',
        description: null,
        canonical: null,
        lang: 'en',
        links: ['https://example.com/a'],
        wordCount: 3,
      },
    });
    await expect(
      transforms.run(
        response('{"a":[1,2]}', 'application/json'),
        { name: 'json', options: { select: ['/a/1'] } },
        never,
      ),
    ).resolves.toEqual({ ok: true, value: { '/a/1': 2 } });
    await expect(
      transforms.run(response('abc'), { name: 'digest', options: {} }, never),
    ).resolves.toMatchObject({
      ok: true,
      value: { bytes: 3 },
    });
    await expect(transforms.run(response('hi'), { name: 'raw', options: {} }, never)).resolves.toMatchObject({
      ok: true,
      value: { encoding: 'text', body: 'hi' },
    });
    await expect(
      transforms.run(response('beta alpha beta'), { name: 'top-words', options: { top: 1 } }, never),
    ).resolves.toEqual({ ok: true, value: [{ word: 'beta', count: 2 }] });
    expect(transforms.stats()).toMatchObject({ pooled: 6, inline: 0 });
  });

  it('answers TRANSFORM_ERROR for an unknown name and for a malformed body', async () => {
    const transforms = pool();
    await expect(transforms.run(response(), { name: 'nope', options: {} }, never)).resolves.toEqual({
      ok: false,
      code: 'TRANSFORM_ERROR',
      message: 'unknown transform "nope"',
    });
    await expect(
      transforms.run(response('{"a":', 'application/json'), { name: 'json', options: {} }, never),
    ).resolves.toMatchObject({
      ok: false,
      code: 'TRANSFORM_ERROR',
      message: expect.stringMatching(/at position 5/),
    });
  });

  it.each([
    ['throws', 'TRANSFORM_ERROR', /^boom from the transform$/, false],
    ['loops', 'TRANSFORM_TIMEOUT', /ran longer than 300 ms/, true],
    ['exits', 'TRANSFORM_CRASHED', /worker exited with code: 3/, true],
    ['heap-bomb', 'TRANSFORM_CRASHED', /memory limit/, true],
    ['unclonable', 'TRANSFORM_CRASHED', /crashed its worker/, true],
  ])('contains a transform that %s (%s) and keeps serving', async (name, code, message, replacesWorker) => {
    // Only the looping row may time out; a heap filling up on a busy machine may take seconds.
    const transforms = pool({ taskTimeoutMs: name === 'loops' ? 300 : 60_000, workerHeapMb: 32 });
    const before = await threadOf(transforms);
    const result = await transforms.run(response(), { name, options: {} }, never);
    expect(result).toEqual({ ok: false, code, message: expect.stringMatching(message) });
    const after = await threadOf(transforms);
    // A worker that looped, exited or ran out of memory is gone; a fresh one answers.
    expect(after !== before).toBe(replacesWorker);
    expect(transforms.stats()).toMatchObject({ admitted: 0, waiting: 0 });
  });

  it('times a task from its start in a worker, not from its wait in the queue', async () => {
    // One thread, six 300 ms tasks: the last waits 1.5 s, runs 0.3 s, and must not hit the 1.5 s limit.
    const transforms = pool({ taskTimeoutMs: 1_500, maxQueue: 5 });
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        transforms.run(response(), { name: 'cpu-burn', options: { ms: 300 } }, never),
      ),
    );
    expect(results.map((result) => result.ok)).toEqual([true, true, true, true, true, true]);
  });

  it('moves an exact-size body to the worker instead of copying it', async () => {
    const transforms = pool();
    const body = new Uint8Array(64 * 1024).fill(7);
    const result = await transforms.run(response(body), { name: 'thread-id', options: {} }, never);
    expect(result).toMatchObject({ ok: true, value: { bytes: 64 * 1024 } });
    // Transferred: the caller's buffer is detached.
    expect(body.byteLength).toBe(0);
  });

  it.each([
    ['a view on a larger buffer', () => new Uint8Array(new ArrayBuffer(1024), 16, 100)],
    ['a pooled Buffer (untransferable)', () => Buffer.from('small pooled buffer')],
    ['a view on a SharedArrayBuffer', () => new Uint8Array(new SharedArrayBuffer(32))],
  ])('copies %s rather than detach memory it does not own', async (_case, make) => {
    const transforms = pool();
    const body = make();
    const length = body.byteLength;
    const result = await transforms.run(response(body), { name: 'thread-id', options: {} }, never);
    expect(result).toMatchObject({ ok: true, value: { bytes: length } });
    expect(body.byteLength).toBe(length);
  });

  it('keeps admitted bodies within threads + maxQueue and makes further callers wait', async () => {
    const transforms = pool({ threads: 2, maxQueue: 3 });
    const gate = new SharedArrayBuffer(12);
    const flags = new Int32Array(gate);
    const runs: Array<Promise<TransformResult>> = [];
    let peakAdmitted = 0;
    for (let index = 0; index < 20; index++) {
      const run = transforms.run(response(new Uint8Array(1024)), { name: 'gated', options: { gate } }, never);
      runs.push(run.finally(() => (peakAdmitted = Math.max(peakAdmitted, transforms.stats().admitted))));
    }
    expect(transforms.stats()).toMatchObject({ admitted: 5, waiting: 15, bound: 5 });
    await until(() => Atomics.load(flags, 1) === 2);
    expect(transforms.stats()).toMatchObject({ admitted: 5, waiting: 15 });

    Atomics.store(flags, 0, 1);
    Atomics.notify(flags, 0);
    const results = await Promise.all(runs);
    expect(results.every((result) => result.ok)).toBe(true);
    expect(Atomics.load(flags, 2)).toBe(2); // never more running than threads
    expect(peakAdmitted).toBeLessThanOrEqual(5);
    expect(transforms.stats()).toMatchObject({ admitted: 0, waiting: 0, peakAdmitted: 5, pooled: 20 });
  });

  it('answers TRANSFORM_TIMEOUT "stopped" when the caller aborts while waiting or running', async () => {
    const transforms = pool({ threads: 1, maxQueue: 0 });
    const gate = new SharedArrayBuffer(12);
    const running = new AbortController();
    const waiting = new AbortController();
    const first = transforms.run(response(), { name: 'gated', options: { gate } }, running.signal);
    const second = transforms.run(response(), { name: 'gated', options: { gate } }, waiting.signal);
    expect(transforms.stats()).toMatchObject({ admitted: 1, waiting: 1 });

    waiting.abort(new Error('job aborted'));
    await expect(second).resolves.toEqual({
      ok: false,
      code: 'TRANSFORM_TIMEOUT',
      message: 'transform "gated" stopped: job aborted',
    });
    expect(transforms.stats().waiting).toBe(0);

    await until(() => Atomics.load(new Int32Array(gate), 1) === 1);
    running.abort(new Error('deadline'));
    await expect(first).resolves.toMatchObject({
      code: 'TRANSFORM_TIMEOUT',
      message: expect.stringMatching(/deadline$/),
    });
    const aborted = new AbortController();
    aborted.abort(new Error('already'));
    await expect(
      transforms.run(response(), { name: 'raw', options: {} }, aborted.signal),
    ).resolves.toMatchObject({
      code: 'TRANSFORM_TIMEOUT',
    });
    // The gate never opened: the aborted task's worker was terminated and replaced.
    expect(await threadOf(transforms)).not.toBe(0);
  });

  it('runs small bodies of cheap built-ins inline, and never html or user transforms', async () => {
    const transforms = pool({ inlineMaxBodyBytes: 1024 });
    await expect(
      transforms.run(response('{"a":1}', 'application/json'), { name: 'json', options: {} }, never),
    ).resolves.toEqual({ ok: true, value: { a: 1 }, json: '{"a":1}' });
    await expect(
      transforms.run(response('{"a":', 'application/json'), { name: 'auto', options: {} }, never),
    ).resolves.toMatchObject({ ok: false, code: 'TRANSFORM_ERROR' });
    expect(transforms.stats()).toMatchObject({ inline: 2, pooled: 0 });
    await transforms.run(response('<p>x</p>', 'text/html'), { name: 'html', options: {} }, never);
    await transforms.run(response('x y'), { name: 'top-words', options: {} }, never);
    await transforms.run(response(new Uint8Array(2048)), { name: 'digest', options: {} }, never);
    expect(transforms.stats()).toMatchObject({ inline: 2, pooled: 3 });
  });

  it('closes idempotently, leaves no handles, and refuses work after', async () => {
    const before = process.getActiveResourcesInfo().sort();
    const transforms = createTransformPool({ threads: 2, inlineMaxBodyBytes: 0, workerFile: FIXTURE_WORKER });
    await threadOf(transforms);
    await Promise.all([transforms.close(), transforms.close()]);
    await transforms[Symbol.asyncDispose]();
    expect(transforms.closed).toBe(true);
    // Nothing new outlives the pool (a resource of the test runner may have ended meanwhile).
    const after = process.getActiveResourcesInfo().sort();
    expect(after.filter((resource) => !before.includes(resource))).toEqual([]);
    expect(after.length).toBeLessThanOrEqual(before.length);
    await expect(transforms.run(response(), { name: 'raw', options: {} }, never)).rejects.toMatchObject({
      code: 'POOL_CLOSED',
    });
  });

  it('answers TRANSFORM_CRASHED for the running task and the waiting callers when it closes', async () => {
    const transforms = pool({ threads: 1, maxQueue: 0 });
    const gate = new SharedArrayBuffer(12);
    const first = transforms.run(response(), { name: 'gated', options: { gate } }, never);
    const second = transforms.run(response(), { name: 'gated', options: { gate } }, never);
    await until(() => Atomics.load(new Int32Array(gate), 1) === 1);
    expect(transforms.stats()).toMatchObject({ admitted: 1, waiting: 1 });
    await transforms.close();
    const closed = {
      ok: false,
      code: 'TRANSFORM_CRASHED',
      message: 'the transform pool closed before "gated" finished',
    };
    await expect(first).resolves.toEqual(closed);
    await expect(second).resolves.toEqual(closed);
  });

  it('shares one warm pool until it is closed', async () => {
    const shared = sharedTransformPool({ threads: 1 });
    expect(sharedTransformPool()).toBe(shared);
    await closeSharedTransformPool();
    expect(shared.closed).toBe(true);
    const next = sharedTransformPool({ threads: 1 });
    expect(next).not.toBe(shared);
    expect(next.closed).toBe(false);
  });

  it('rejects bad options naming the field', () => {
    expect(() => createTransformPool({ threads: 0 })).toThrow(/threads/);
    expect(() => createTransformPool({ taskTimeoutMs: -1 })).toThrow(/taskTimeoutMs/);
    expect(() => createTransformPool({ queue: 3 } as TransformPoolOptions)).toThrow(/queue/);
  });
});
