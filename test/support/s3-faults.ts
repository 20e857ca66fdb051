// Test-only S3 faults: an SDK middleware (named testInjectedS3Answer) that answers chosen requests itself.
//
// fauxqs does not enforce conditional writes nor throttle, so tests that need S3 to say 412, 409 or 503
// put this middleware on the client: it sits below the SDK's deserializer and retry strategy, so an
// injected answer is parsed and retried exactly as a real one would be.
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';

export const INJECTED_ANSWER_MIDDLEWARE = 'testInjectedS3Answer';

export interface InjectedAnswer {
  status: number;
  code: string;
  /** Informational: the SDK decides retries from status and code, as it would for a real answer. */
  retryable?: boolean;
}

export interface InjectedRequest {
  headers: Record<string, string>;
  input: Record<string, unknown>;
}

/** Installs the middleware; `decide` returns an answer to send instead of S3's, or null to pass through. */
export function injectS3Answers(
  client: S3Client,
  decide: (commandName: string, request: InjectedRequest) => InjectedAnswer | null,
): () => void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      const answer = decide(String(context.commandName ?? ''), {
        headers: request.headers ?? {},
        input: args.input as Record<string, unknown>,
      });
      if (!answer) return next(args);
      const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${answer.code}</Code><Message>injected by ${INJECTED_ANSWER_MIDDLEWARE}</Message></Error>`;
      return {
        response: {
          statusCode: answer.status,
          reason: answer.code,
          headers: { 'content-type': 'application/xml', 'x-amz-request-id': 'injected' },
          body: Readable.from([Buffer.from(xml)]),
        },
        output: undefined,
      } as unknown as Awaited<ReturnType<typeof next>>;
    },
    { step: 'deserialize', priority: 'low', name: INJECTED_ANSWER_MIDDLEWARE },
  );
  return () => {
    client.middlewareStack.remove(INJECTED_ANSWER_MIDDLEWARE);
  };
}

export const ENFORCE_CONDITIONS_MIDDLEWARE = 'testEnforceConditionalWrites';

/**
 * Makes fauxqs honour If-None-Match: * and If-Match on PutObject (and CompleteMultipartUpload) the way real
 * S3 does, answering 412. Check and write run under one lock per client, so the pair is atomic for every
 * request through this client. `bareEtagOnly` mimics radosgw: a quoted If-Match never matches.
 */
export function enforceConditionalWrites(
  client: S3Client,
  options: { bareEtagOnly?: boolean } = {},
): () => void {
  let lock: Promise<unknown> = Promise.resolve();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = String(context.commandName ?? '');
      const input = args.input as {
        Bucket?: string;
        Key?: string;
        IfMatch?: string;
        IfNoneMatch?: string;
        UploadId?: string;
      };
      const conditional =
        (command === 'PutObjectCommand' || command === 'CompleteMultipartUploadCommand') &&
        (input.IfMatch !== undefined || input.IfNoneMatch !== undefined);
      if (!conditional) return next(args);
      const run = async (): Promise<Awaited<ReturnType<typeof next>>> => {
        const current = await currentEtag(client, input.Bucket ?? '', input.Key ?? '');
        const failed =
          (input.IfNoneMatch === '*' && current !== null) ||
          (input.IfMatch !== undefined &&
            (current === null ||
              (options.bareEtagOnly && input.IfMatch.includes('"')) ||
              input.IfMatch.replaceAll('"', '') !== current.replaceAll('"', '')));
        if (!failed) return next(args);
        const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>${ENFORCE_CONDITIONS_MIDDLEWARE}</Message></Error>`;
        return {
          response: {
            statusCode: 412,
            reason: 'Precondition Failed',
            headers: { 'content-type': 'application/xml' },
            body: Readable.from([Buffer.from(xml)]),
          },
          output: undefined,
        } as unknown as Awaited<ReturnType<typeof next>>;
      };
      const result = lock.then(run, run);
      lock = result.catch(() => undefined);
      return result;
    },
    { step: 'deserialize', priority: 'low', name: ENFORCE_CONDITIONS_MIDDLEWARE },
  );
  return () => {
    client.middlewareStack.remove(ENFORCE_CONDITIONS_MIDDLEWARE);
  };
}

async function currentEtag(client: S3Client, bucket: string, key: string): Promise<string | null> {
  const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
  try {
    // The middleware skips HeadObject, so this goes straight to fauxqs.
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return head.ETag ?? null;
  } catch (error) {
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
    throw error;
  }
}
