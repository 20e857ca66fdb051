// The S3 client built from the standard AWS settings (the core never reads process.env; adapters do).
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

/** The region an endpoint-only setup (embedded S3, radosgw, MinIO) signs for when none is given. */
const ENDPOINT_DEFAULT_REGION = 'us-east-1';

export interface S3Settings {
  region: string | undefined;
  endpoint: string | undefined;
  forcePathStyle: boolean;
}

/** Reads the standard variables: AWS_REGION (or AWS_DEFAULT_REGION), AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL. */
export function s3SettingsFrom(env: NodeJS.ProcessEnv = process.env): S3Settings {
  const endpoint = nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  const region =
    nonEmpty(env.AWS_REGION) ??
    nonEmpty(env.AWS_DEFAULT_REGION) ??
    (endpoint === undefined ? undefined : ENDPOINT_DEFAULT_REGION);
  // Custom endpoints rarely resolve <bucket>.<host> names: path-style works against all of them.
  return { region, endpoint, forcePathStyle: endpoint !== undefined };
}

/**
 * An S3 client with the SDK's standard retry mode (throttling and 5xx retried with backoff).
 * `overrides` is for tests and the embedded S3 (static credentials, a middleware stack).
 */
export function createS3Client(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<S3ClientConfig> = {},
): S3Client {
  const settings = s3SettingsFrom(env);
  const config: S3ClientConfig = { retryMode: 'standard', forcePathStyle: settings.forcePathStyle };
  if (settings.region !== undefined) config.region = settings.region;
  if (settings.endpoint !== undefined) config.endpoint = settings.endpoint;
  const accessKeyId = nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secretAccessKey = nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  // Only when the caller passed its own env: with process.env the SDK's default chain reads the same keys.
  if (env !== process.env && accessKeyId !== undefined && secretAccessKey !== undefined) {
    const sessionToken = nonEmpty(env.AWS_SESSION_TOKEN);
    config.credentials =
      sessionToken === undefined
        ? { accessKeyId, secretAccessKey }
        : { accessKeyId, secretAccessKey, sessionToken };
  }
  // radosgw (and other S3 implementations) refuse the SDK's default streamed-checksum trailer.
  const checksum = nonEmpty(env.AWS_REQUEST_CHECKSUM_CALCULATION)?.toUpperCase();
  if (checksum === 'WHEN_REQUIRED' || checksum === 'WHEN_SUPPORTED')
    config.requestChecksumCalculation = checksum;
  const responseChecksum = nonEmpty(env.AWS_RESPONSE_CHECKSUM_VALIDATION)?.toUpperCase();
  if (responseChecksum === 'WHEN_REQUIRED' || responseChecksum === 'WHEN_SUPPORTED') {
    config.responseChecksumValidation = responseChecksum;
  }
  return new S3Client({ ...config, ...overrides });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
