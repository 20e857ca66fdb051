// The proof that the deployed code runs: synth with esbuild, copy each asset where no node_modules is reachable,
// and invoke the bundled handlers with plain node against the local upstream and embedded S3 (sam local invoke's job).
import { execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INLINE_MAX_BODY_BYTES } from '../../functions/core/pool.ts';
import { PROJECT_ROOT } from '../../infra/fanout-function.ts';
import { runCli, s3Env } from '../support/cli.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { type CloudFormationTemplate, logicalIdOf, type Synthesized, synthStack } from './synth.ts';

const run = promisify(execFile);

/** Records every Worker the process starts (file and piscina's task file), printed to stderr at exit. */
const WORKER_RECORDER = `
import { createRequire, syncBuiltinESMExports } from 'node:module';
const threads = createRequire(import.meta.url)('node:worker_threads');
const Original = threads.Worker;
const started = [];
threads.Worker = class RecordedWorker extends Original {
  #entry;
  constructor(filename, options) {
    super(filename, options);
    this.#entry = { filename: String(filename), task: null };
    started.push(this.#entry);
  }
  // piscina names the task module (our transform worker) in its start message to the worker.
  postMessage(message, transfer) {
    if (typeof message?.filename === 'string') this.#entry.task = message.filename;
    return super.postMessage(message, transfer);
  }
};
syncBuiltinESMExports();
process.on('exit', () => process.stderr.write('FANOUT_WORKERS ' + JSON.stringify(started) + '\\n'));
`;

/** Bodies above the pool's inline threshold, so every transform goes to a worker thread. */
const BODY_BYTES = 2 * INLINE_MAX_BODY_BYTES;
const ITEMS = 12;

let synth: Synthesized;
let work: string;
let s3: TestS3;
let upstream: Upstream;
const bundles: Record<'runner' | 'api', string> = { runner: '', api: '' };

beforeAll(async () => {
  synth = synthStack({ bundle: true });
  work = mkdtempSync(join(tmpdir(), 'fanout-bundle-'));
  for (const [name, prefix] of [
    ['runner', 'RunnerFunction'],
    ['api', 'ApiFunction'],
  ] as const) {
    bundles[name] = copyAsset(synth.json, synth.outdir, prefix, join(work, name));
  }
  // The invoker and the recorder live beside the bundles: nothing of the repository is on their path.
  cpSync(join(PROJECT_ROOT, 'functions/local/invoke.ts'), join(work, 'invoke.ts'));
  writeFileSync(join(work, 'record-workers.mjs'), WORKER_RECORDER);
  [s3, upstream] = await Promise.all([startTestS3({ bucket: 'fanout-bundle' }), startUpstream()]);
}, 180_000);

afterAll(async () => {
  await Promise.all([s3?.stop(), upstream?.close()]);
  if (work) rmSync(work, { recursive: true, force: true });
  if (synth) rmSync(synth.outdir, { recursive: true, force: true });
});

/** The asset folder a function's `aws:asset:path` metadata names, copied to `to`. */
function copyAsset(json: CloudFormationTemplate, outdir: string, prefix: string, to: string): string {
  const id = logicalIdOf(json, 'AWS::Lambda::Function', prefix);
  const assetPath = json.Resources[id]?.Metadata?.['aws:asset:path'];
  if (typeof assetPath !== 'string') throw new Error(`${id} has no aws:asset:path metadata`);
  cpSync(join(outdir, assetPath), to, { recursive: true });
  return to;
}

interface Invocation {
  result: Record<string, unknown>;
  /** The handler's logs (Lambda would send them to CloudWatch). */
  stderr: string;
  workers: { filename: string; task: string | null }[];
}

async function invokeBundle(
  bundle: string,
  event: unknown,
  name: string,
  extraEnv: Record<string, string> = {},
): Promise<Invocation> {
  const eventFile = join(work, `${name}.event.json`);
  writeFileSync(eventFile, JSON.stringify(event));
  const { stdout, stderr } = await run(
    process.execPath,
    [
      '--import',
      join(work, 'record-workers.mjs'),
      join(work, 'invoke.ts'),
      eventFile,
      join(bundle, 'index.mjs'),
    ],
    {
      cwd: work,
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
      // Only what Lambda would set, plus the local endpoints: no NODE_PATH, nothing from the repository.
      env: {
        PATH: dirname(process.execPath),
        NODE_OPTIONS: '--enable-source-maps',
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'fanout-local',
        AWS_SECRET_ACCESS_KEY: 'fanout-local',
        AWS_ENDPOINT_URL_S3: s3.endpoint,
        FANOUT_BUCKET: s3.bucket,
        FANOUT_PREFIX: 'jobs',
        FANOUT_ALLOW: '127.0.0.1',
        FANOUT_RUNNER_FUNCTION: 'FanoutTest-runner',
        POWERTOOLS_SERVICE_NAME: 'fanout',
        POWERTOOLS_METRICS_NAMESPACE: 'Fanout',
        POWERTOOLS_LOG_LEVEL: 'WARN',
        ...extraEnv,
      },
    },
  );
  const recorded = /FANOUT_WORKERS (.*)/.exec(stderr)?.[1];
  return {
    result: JSON.parse(stdout.trim().split('\n').at(-1) ?? 'null') as Record<string, unknown>,
    stderr,
    workers: recorded ? (JSON.parse(recorded) as Invocation['workers']) : [],
  };
}

/** A sample event from events/ with its example.com URLs pointed at the local upstream and bigger bodies. */
function localEvent(file: string): string {
  const text = readFileSync(join(PROJECT_ROOT, 'events', file), 'utf8');
  return text.replaceAll('https://api.example.com', origin());
}

/** The upstream's origin without the trailing slash its `url` has. */
function origin(): string {
  return new URL(upstream.url).origin;
}

function items(prefix: string): string[] {
  return Array.from(
    { length: ITEMS },
    (_, i) => `${origin()}/item/${i}?bytes=${BODY_BYTES}&key=${prefix}-${i}`,
  );
}

describe('the synthesized bundle', () => {
  it('is folders with index.mjs, the transform worker and piscina, and no node_modules in reach', () => {
    for (const bundle of Object.values(bundles)) {
      for (const file of [
        'index.mjs',
        'index.mjs.map',
        'transform-worker.mjs',
        'piscina/index.cjs',
        'piscina/worker.js',
      ]) {
        expect(existsSync(join(bundle, file)), file).toBe(true);
      }
      for (let dir = bundle; dir !== dirname(dir); dir = dirname(dir)) {
        expect(existsSync(join(dir, 'node_modules')), `${dir}/node_modules`).toBe(false);
      }
      expect(statSync(join(bundle, 'index.mjs')).size).toBeGreaterThan(100_000);
    }
  });

  it('runs a direct job in the runner bundle, transforms in worker threads from the bundle, results in S3', async () => {
    const event = JSON.parse(localEvent('direct.json')) as Record<string, unknown>;
    const job = {
      ...event,
      jobId: 'bundle-direct',
      items: items('direct'),
      options: { concurrency: 4, transform: { name: 'json' } },
    };
    const { result, workers } = await invokeBundle(bundles.runner, job, 'direct');
    expect(result).toMatchObject({
      jobId: 'bundle-direct',
      status: 'complete',
      counts: { total: ITEMS, succeeded: ITEMS, failed: 0 },
    });
    // piscina's worker and our transform worker, both loaded from the copied bundle folder.
    expect(workers.length).toBeGreaterThan(0);
    for (const worker of workers) {
      expect(worker.filename).toContain(join(bundles.runner, 'piscina', 'worker.js'));
      expect(worker.task).toContain(join(bundles.runner, 'transform-worker.mjs'));
    }
    // The runner returns a summary; the manifest in S3 lists the committed parts.
    const manifest = JSON.parse(await s3.getText(String(result.manifest))) as { results: string[] };
    const resultKeys = manifest.results;
    expect(resultKeys.length).toBeGreaterThan(0);
    const lines = (await Promise.all(resultKeys.map((key) => s3.getText(key))))
      .join('\n')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { value: { id: number } });
    expect(lines.map((line) => line.value.id).sort((a, b) => a - b)).toEqual(
      Array.from({ length: ITEMS }, (_, i) => i),
    );
  });

  it('runs with FANOUT_TRACING=true: the tracer is in the bundle (Lambda has no Powertools of its own)', async () => {
    const job = { jobId: 'bundle-traced', items: items('traced').slice(0, 4), options: { concurrency: 2 } };
    const { result } = await invokeBundle(bundles.runner, job, 'traced', { FANOUT_TRACING: 'true' });
    expect(result).toMatchObject({ jobId: 'bundle-traced', status: 'complete', counts: { succeeded: 4 } });
  });

  it("runs through `fanout invoke --function` (the template's bundle, like sam local invoke), a 202's run drained", async () => {
    const template = readdirSync(synth.outdir).find((name) => name.endsWith('.template.json')) ?? '';
    const apiId = logicalIdOf(synth.json, 'AWS::Lambda::Function', 'ApiFunction');
    const eventFile = join(work, 'cli-large.event.json');
    writeFileSync(eventFile, localEvent('api-post-large.json'));
    const result = await runCli(
      ['invoke', eventFile, '--function', apiId, '--template', join(synth.outdir, template)],
      { env: { ...s3Env(s3.endpoint), FANOUT_BUCKET: s3.bucket, FANOUT_ALLOW: '127.0.0.1' } },
    );
    expect(result.code).toBe(0);
    // The result alone on stdout, though the run the 202 started logged while it was waited for.
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
    const reply = JSON.parse(result.stdout) as { statusCode: number; body: string };
    expect(reply.statusCode).toBe(202);
    const { jobId } = JSON.parse(reply.body) as { jobId: string };
    const manifest = JSON.parse(await s3.getText(`jobs/${jobId}/manifest.json`)) as { status: string };
    expect(manifest.status).toBe('complete');
  });

  it('answers POST /jobs in the API bundle with the manifest of a small job run in the request', async () => {
    const event = JSON.parse(localEvent('api-post-small.json')) as Record<string, unknown> & {
      headers: Record<string, string>;
    };
    const body = JSON.stringify({
      jobId: 'bundle-api',
      items: items('api'),
      options: { concurrency: 4, transform: { name: 'json' } },
    });
    const request = {
      ...event,
      headers: {
        ...event.headers,
        'idempotency-key': 'bundle-api',
        'content-length': String(Buffer.byteLength(body)),
      },
      body,
    };
    const { result, workers } = await invokeBundle(bundles.api, request, 'api');
    expect(result.statusCode).toBe(200);
    const manifest = JSON.parse(String(result.body)) as Record<string, unknown>;
    expect(manifest).toMatchObject({
      jobId: 'bundle-api',
      status: 'complete',
      counts: { total: ITEMS, succeeded: ITEMS },
    });
    expect(workers.length).toBeGreaterThan(0);
    for (const worker of workers) {
      expect(worker.filename).toContain(join(bundles.api, 'piscina', 'worker.js'));
      expect(worker.task).toContain(join(bundles.api, 'transform-worker.mjs'));
    }
  });
});
