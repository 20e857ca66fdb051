// The results bucket: encrypted, private, TLS-only, with lifecycle rules for debris and (optionally) old jobs.
import { Arn, Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface ResultsBucketProps {
  /** Job data lives under this key prefix. */
  prefix: string;
  /** Expire job data after this many days; null keeps it. */
  expireAfterDays: number | null;
}

export class ResultsBucket extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: ResultsBucketProps) {
    super(scope, id);
    const lifecycleRules: s3.LifecycleRule[] = [
      // An interrupted run leaves multipart uploads open; their parts cost money until aborted.
      { id: 'abort-incomplete-multipart', abortIncompleteMultipartUploadAfter: Duration.days(1) },
    ];
    if (props.expireAfterDays !== null) {
      lifecycleRules.push({
        id: 'expire-job-data',
        prefix: `${props.prefix}/`,
        expiration: Duration.days(props.expireAfterDays),
      });
    }
    this.bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules,
      // Results are the product: a stack deletion must not take them along.
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}

/** Every object of a bucket known only by name (a job source), in the stack's partition. */
export function objectsArnOf(bucketName: string): string {
  return Arn.format({
    partition: Aws.PARTITION,
    service: 's3',
    region: '',
    account: '',
    resource: bucketName,
    resourceName: '*',
  });
}

/** A bucket known only by name, for s3:ListBucket. */
export function bucketArnOf(bucketName: string): string {
  return Arn.format({
    partition: Aws.PARTITION,
    service: 's3',
    region: '',
    account: '',
    resource: bucketName,
  });
}
