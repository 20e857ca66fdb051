// The embedded S3 and the S3 client settings: loopback-only binding, a real SDK round trip, env parsing.
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client, s3SettingsFrom } from '../../functions/adapters/s3-client.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';

function tryConnect(host: string, port: number): Promise<'connected' | string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

describe('embedded S3', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3.stop();
  });

  it('listens on 127.0.0.1 and on no other interface', async () => {
    const port = Number(new URL(s3.endpoint).port);
    expect(new URL(s3.endpoint).hostname).toBe('127.0.0.1');
    expect(await tryConnect('127.0.0.1', port)).toBe('connected');
    // Every other local address must refuse: the emulator has no authentication.
    const others = Object.values(networkInterfaces())
      .flat()
      .filter((address) => address !== undefined && address.address !== '127.0.0.1')
      .map((address) => address?.address ?? '');
    others.push('::1');
    for (const host of new Set(others)) {
      if (host.startsWith('fe80:')) continue; // link-local needs a scope id to dial; it is no different
      expect([host, await tryConnect(host, port)]).not.toEqual([host, 'connected']);
    }
  });

  it('round-trips an object through the real SDK, and persists it as a file', async () => {
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'a/b.txt', Body: 'hello' }));
    expect(await s3.listKeys('a/')).toEqual(['a/b.txt']);
    expect(await s3.getText('a/b.txt')).toBe('hello');
  });
});

describe('S3 client settings', () => {
  it.each([
    [{}, { region: undefined, endpoint: undefined, forcePathStyle: false }],
    [{ AWS_REGION: 'eu-west-1' }, { region: 'eu-west-1', endpoint: undefined, forcePathStyle: false }],
    [
      { AWS_ENDPOINT_URL: 'http://127.0.0.1:9000' },
      { region: 'us-east-1', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true },
    ],
    [
      { AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2', AWS_DEFAULT_REGION: 'ap-south-1' },
      { region: 'ap-south-1', endpoint: 'http://b:2', forcePathStyle: true },
    ],
  ])('reads %j as %j', (env, expected) => {
    expect(s3SettingsFrom(env)).toEqual(expected);
  });

  it('builds a client with the standard retry mode and path-style addressing for an endpoint', async () => {
    const client = createS3Client({
      AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9',
      AWS_ACCESS_KEY_ID: 'k',
      AWS_SECRET_ACCESS_KEY: 's',
    });
    expect(await client.config.region()).toBe('us-east-1');
    expect(client.config.forcePathStyle).toBe(true);
    expect(await client.config.retryStrategy()).toMatchObject({ mode: 'standard' });
    expect(await client.config.credentials()).toMatchObject({ accessKeyId: 'k', secretAccessKey: 's' });
    client.destroy();
  });
});
