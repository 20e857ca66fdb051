// A job run in a child process for the kill-and-resume test: scripted engine, real S3 client, tiny parts.
// Usage: node store-child.ts '{"endpoint","bucket","jobId","items"}' ; prints "ready" once it starts the job.
import { S3Client } from '@aws-sdk/client-s3';
import { runJob } from '../../functions/core/run.ts';
import { fakeEngine, urls } from './fake-engine.ts';

const args = JSON.parse(process.argv[2] ?? '{}') as {
  endpoint: string;
  bucket: string;
  jobId: string;
  items: number;
};
const client = new S3Client({
  endpoint: args.endpoint,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
});
// Every 7th item (by its number, the same in every run) fails, so both kinds of part are written and resumed.
const engine = fakeEngine((item) => (Number(item.url.split('/').pop()) % 7 === 6 ? 'fail' : 'ok'), {
  delayMs: 1,
  valueBytes: 64,
});
process.stdout.write('ready\n');
const manifest = await runJob(
  { jobId: args.jobId, items: urls(args.items) },
  {
    store: { client, bucket: args.bucket, partBytes: 4_000, checkpointMs: 40 },
    startFanOut: engine.startFanOut,
    leaseMs: 150,
  },
);
process.stdout.write(`${manifest.status}\n`);
client.destroy();
process.exit(manifest.status === 'complete' ? 0 : 2);
