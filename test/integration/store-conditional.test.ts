// Conditional writes: create-only parts, the manifest's compare-and-swap, overlapping runs and takeovers.
// fauxqs ignores If-Match / If-None-Match, so these tests put the testEnforceConditionalWrites or
// testInjectedS3Answer middleware (test/support/s3-faults.ts) on the client to make S3 answer 412.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runJob } from '../../functions/core/run.ts';
import {
  LEASE_MS,
  ManifestConflictError,
  putCreateOnly,
  readManifestVersion,
  type StoredManifest,
  StreamedObject,
  storeLayout,
  writeManifest,
} from '../../functions/core/store.ts';
import type { Manifest } from '../../functions/core/types.ts';
import { recordingClock } from '../support/clock.ts';
import { fakeEngine, urls } from '../support/fake-engine.ts';
import { countIds, idsInParts, listedKeys, startTestS3, type TestS3 } from '../support/s3.ts';
import { enforceConditionalWrites, injectS3Answers } from '../support/s3-faults.ts';

let s3: TestS3;
let restore: Array<() => void> = [];
let jobCounter = 0;
const nextJobId = (): string => `cond-${++jobCounter}`;

beforeAll(async () => {
  s3 = await startTestS3();
});
afterAll(async () => {
  await s3.stop();
});
afterEach(() => {
  for (const undo of restore.reverse()) undo();
  restore = [];
});

function sampleManifest(jobId: string, writer: string): StoredManifest {
  return {
    jobId,
    status: 'running',
    startedAt: new Date(0).toISOString(),
    finishedAt: null,
    runs: 1,
    counts: { total: 0, succeeded: 0, failed: 0, pending: 0, duplicates: 0 },
    results: [],
    errors: [],
    pending: null,
    options: {} as Manifest['options'],
    hosts: {},
    writer,
  };
}

async function everyIdOnce(manifest: Manifest): Promise<{ ids: number; repeated: string[] }> {
  const seen = countIds(await idsInParts(s3.getText, listedKeys(manifest)));
  return { ids: seen.size, repeated: [...seen].filter(([, count]) => count !== 1).map(([id]) => id) };
}

describe('create-only writes', () => {
  it('refuses to overwrite another run’s object, and takes a retried write of its own as success', async () => {
    restore.push(enforceConditionalWrites(s3.client));
    const layout = storeLayout({ client: s3.client, bucket: s3.bucket }, nextJobId());
    const key = `${layout.base}/runs/0001.json`;
    expect(await putCreateOnly(layout, key, '{}', 'mine', undefined)).toBe(true);
    expect(await putCreateOnly(layout, key, '{}', 'mine', undefined)).toBe(true);
    expect(await putCreateOnly(layout, key, '{}', 'rival', undefined)).toBe(false);
  });

  it('fails a part whose key another run already wrote', async () => {
    restore.push(enforceConditionalWrites(s3.client));
    const layout = storeLayout({ client: s3.client, bucket: s3.bucket }, nextJobId());
    const key = `${layout.base}/results/0001-00000.jsonl`;
    const first = new StreamedObject({ layout, key, createOnly: true, token: 'first' });
    await first.write('{"id":"a"}');
    await first.close();
    const second = new StreamedObject({ layout, key, createOnly: true, token: 'second' });
    await second.write('{"id":"b"}');
    await expect(second.close()).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
    expect(await s3.getText(key)).toBe('{"id":"a"}\n');
  });
});

describe('manifest compare-and-swap', () => {
  it('throws ManifestConflictError when another writer changed the manifest', async () => {
    restore.push(enforceConditionalWrites(s3.client));
    const layout = storeLayout({ client: s3.client, bucket: s3.bucket }, nextJobId());
    const etag = await writeManifest(layout, sampleManifest(layout.base, 'a:1'), null, undefined);
    await writeManifest(layout, sampleManifest(layout.base, 'b:1'), etag, undefined);
    await expect(
      writeManifest(layout, sampleManifest(layout.base, 'a:2'), etag, undefined),
    ).rejects.toBeInstanceOf(ManifestConflictError);
    expect((await readManifestVersion(layout, undefined))?.manifest.writer).toBe('b:1');
  });

  it('refuses to create a manifest that already exists', async () => {
    restore.push(enforceConditionalWrites(s3.client));
    const layout = storeLayout({ client: s3.client, bucket: s3.bucket }, nextJobId());
    await writeManifest(layout, sampleManifest(layout.base, 'a:1'), null, undefined);
    await expect(
      writeManifest(layout, sampleManifest(layout.base, 'b:1'), null, undefined),
    ).rejects.toBeInstanceOf(ManifestConflictError);
  });

  it('retries with the bare ETag when S3 refuses the quoted one (the radosgw quirk)', async () => {
    const layout = storeLayout({ client: s3.client, bucket: s3.bucket }, nextJobId());
    const ifMatch: string[] = [];
    restore.push(
      injectS3Answers(s3.client, (command, request) => {
        if (command === 'PutObjectCommand' && request.input.IfMatch)
          ifMatch.push(String(request.input.IfMatch));
        return null;
      }),
    );
    // Added second, so it sits inside the recorder: the recorder sees both attempts.
    restore.push(enforceConditionalWrites(s3.client, { bareEtagOnly: true }));
    const etag = await writeManifest(layout, sampleManifest(layout.base, 'a:1'), null, undefined);
    await writeManifest(layout, sampleManifest(layout.base, 'a:2'), etag, undefined);
    expect(ifMatch).toHaveLength(2);
    expect(ifMatch[0]).toMatch(/^".*"$/);
    expect(ifMatch[1]).not.toContain('"');
    expect((await readManifestVersion(layout, undefined))?.manifest.writer).toBe('a:2');
  });
});

describe('overlapping runs of one job', () => {
  it('lets a second run wait for the live one, then return its complete manifest: every item once', async () => {
    restore.push(enforceConditionalWrites(s3.client));
    const jobId = nextJobId();
    const store = { client: s3.client, bucket: s3.bucket, checkpointMs: 30 };
    const engineA = fakeEngine(() => 'ok', { delayMs: 2 });
    const engineB = fakeEngine(() => 'ok', { delayMs: 2 });
    const job = { jobId, items: urls(150) };
    const first = runJob(job, { store, startFanOut: engineA.startFanOut, leaseMs: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = runJob(job, { store, startFanOut: engineB.startFanOut, leaseMs: 5_000 });
    const [a, b] = await Promise.all([first, second]);
    expect(a.status).toBe('complete');
    expect(b).toEqual(a);
    expect(engineA.fetched.length + engineB.fetched.length).toBe(150);
    expect(await everyIdOnce(a)).toEqual({ ids: 150, repeated: [] });
  });

  it('fences out a run whose job was taken over: its next checkpoint fails, the taker ends with every item once', async () => {
    restore.push(enforceConditionalWrites(s3.client));
    const jobId = nextJobId();
    const store = { client: s3.client, bucket: s3.bucket, checkpointMs: 30, partBytes: 1_000 };
    const slow = fakeEngine(() => 'ok', { delayMs: 5 });
    const job = { jobId, items: urls(200) };
    const first = runJob(job, { store, startFanOut: slow.startFanOut, leaseMs: 5_000 }).then(
      () => null,
      (error: unknown) => error,
    );
    // Until the first run holds the job (its `running` manifest is there): then the takeover is certain.
    const layout = storeLayout(store, jobId);
    while ((await readManifestVersion(layout, undefined))?.manifest.status !== 'running') {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // leaseMs 0: the taker treats the live run as dead (a paused process looks exactly like this).
    const taker = fakeEngine(() => 'ok');
    const second = await runJob(job, { store, startFanOut: taker.startFanOut, leaseMs: 0 });
    expect(await first).toBeInstanceOf(ManifestConflictError);
    expect(second.status).toBe('complete');
    expect(second.counts).toMatchObject({ total: 200, succeeded: 200, pending: 0 });
    expect(await everyIdOnce(second)).toEqual({ ids: 200, repeated: [] });
  });

  it('takes over from a killed run within 10 s of its last heartbeat (DESIGN), and not before its lease ends', async () => {
    const jobId = nextJobId();
    const store = { client: s3.client, bucket: s3.bucket };
    const clock = recordingClock(Date.parse('2026-01-01T00:00:00Z'));
    // What a SIGKILL right after a heartbeat leaves: a `running` manifest that beats no more.
    const dead = { ...sampleManifest(jobId, '1:dead:1'), heartbeatAt: new Date(clock.now()).toISOString() };
    await writeManifest(storeLayout(store, jobId), dead, null, undefined);
    const engine = fakeEngine();
    const manifest = await runJob(
      { jobId, items: urls(5) },
      { store, clock, startFanOut: engine.startFanOut },
    );
    expect(manifest).toMatchObject({ status: 'complete', runs: 2, counts: { succeeded: 5 } });
    // The rerun's polls for the lease come first; its own heartbeat sleeps (longer) follow the takeover.
    const firstBeat = clock.sleeps.findIndex((ms) => ms > 500);
    const polls = clock.sleeps.slice(0, firstBeat < 0 ? undefined : firstBeat);
    expect(polls.every((ms) => ms === 500)).toBe(true);
    const waitedMs = polls.reduce((sum, ms) => sum + ms, 0);
    expect(waitedMs).toBeGreaterThan(LEASE_MS);
    expect(waitedMs).toBeLessThanOrEqual(LEASE_MS + 500);
    expect(waitedMs).toBeLessThan(10_000);
  });
});
