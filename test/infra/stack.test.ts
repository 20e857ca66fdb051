// Template assertions per construct of the fanout stack, cdk-nag with every finding acknowledged, the context flag.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Capture, Match, type Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { API_REMAINING_MS } from '../../functions/cli/serve.ts';
import {
  API_TIMEOUT_SECONDS,
  DEFAULT_RUNNER_MEMORY_MB,
  MB_PER_VCPU,
  RUNNER_TIMEOUT_SECONDS,
} from '../../infra/config.ts';
import {
  type CloudFormationTemplate,
  cdkJsonContext,
  logicalIdOf,
  STACK_NAME,
  type Synthesized,
  synthStack,
} from './synth.ts';

const CONFIG = {
  allow: ['10.0.0.0/8', 'internal.example'],
  sourceBuckets: ['fanout-sources'],
  expireAfterDays: 30,
  logRetentionDays: 90,
  runner: { reservedConcurrency: 50, maxContinuations: 7 },
  api: { syncMaxItems: 25, throttle: { rateLimit: 20, burstLimit: 40 } },
  largeJobs: { maxItemsPerBatch: 500, maxConcurrency: 25 },
  schedules: [
    {
      name: 'nightly',
      expression: 'cron(0 3 * * ? *)',
      timeZone: 'Europe/Paris',
      job: { items: ['https://api.example.com/a', 'https://api.example.com/b'], options: { concurrency: 4 } },
      retry: { maxEventAgeSeconds: 7_200, attempts: 5 },
    },
    { name: 'hourly', expression: 'rate(1 hour)', job: { source: { s3: 's3://fanout-sources/urls.txt' } } },
  ],
};

let synth: Synthesized;
let template: Template;
let json: CloudFormationTemplate;
let runnerId: string;
let apiId: string;
let bucketId: string;

beforeAll(() => {
  // cdk-nag runs on this synth: it throws if any finding is left unacknowledged.
  synth = synthStack({ config: CONFIG, nag: true });
  template = synth.template;
  json = synth.json;
  runnerId = logicalIdOf(json, 'AWS::Lambda::Function', 'RunnerFunction');
  apiId = logicalIdOf(json, 'AWS::Lambda::Function', 'ApiFunction');
  bucketId = logicalIdOf(json, 'AWS::S3::Bucket', 'ResultsBucket');
});

const arnOf = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });

describe('results bucket', () => {
  it('is encrypted, private, versioned by nothing, and retained on stack deletion', () => {
    template.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
      }),
    });
  });

  it('aborts incomplete multipart uploads after a day and expires job data after the configured days', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({
            Id: 'abort-incomplete-multipart',
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
            Status: 'Enabled',
          }),
          Match.objectLike({
            Id: 'expire-job-data',
            Prefix: 'jobs/',
            ExpirationInDays: 30,
            Status: 'Enabled',
          }),
        ]),
      },
    });
  });

  it('denies every request that does not use TLS', () => {
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucketId },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  it('keeps job data forever when no expiry is configured', () => {
    const { template: defaults } = synthStack();
    const rules = new Capture();
    defaults.hasResourceProperties('AWS::S3::Bucket', { LifecycleConfiguration: { Rules: rules } });
    expect(rules.asArray().map((rule) => (rule as { Id: string }).Id)).toEqual([
      'abort-incomplete-multipart',
    ]);
  });
});

describe('functions', () => {
  it.each([
    ['runner', () => runnerId, DEFAULT_RUNNER_MEMORY_MB, RUNNER_TIMEOUT_SECONDS],
    ['API', () => apiId, MB_PER_VCPU, API_TIMEOUT_SECONDS],
  ])('the %s runs Node 24 on arm64 with its memory and timeout', (_name, id, memory, timeout) => {
    const props = json.Resources[id()]?.Properties;
    expect(props).toMatchObject({
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: memory,
      Timeout: timeout,
    });
  });

  it("sizes the runner in whole vCPUs (2 x 1,769 MB) and keeps the API inside API Gateway's 30 s", () => {
    expect(DEFAULT_RUNNER_MEMORY_MB).toBe(3_538);
    expect(RUNNER_TIMEOUT_SECONDS).toBe(900);
    expect(API_TIMEOUT_SECONDS).toBeLessThan(30);
    // `fanout serve` gives each request what the deployed function has.
    expect(API_REMAINING_MS).toBe(API_TIMEOUT_SECONDS * 1000);
  });

  it('reserves the configured concurrency for the runner only', () => {
    expect(json.Resources[runnerId]?.Properties?.ReservedConcurrentExecutions).toBe(50);
    expect(json.Resources[apiId]?.Properties?.ReservedConcurrentExecutions).toBeUndefined();
  });

  it('gives the runner a fixed name, so it can invoke itself without a circular reference', () => {
    expect(json.Resources[runnerId]?.Properties?.FunctionName).toBe(`${STACK_NAME}-runner`);
  });

  it('passes the deployment settings as environment variables', () => {
    for (const id of [runnerId, apiId]) {
      expect(json.Resources[id]?.Properties?.Environment).toEqual({
        Variables: {
          NODE_OPTIONS: '--enable-source-maps',
          FANOUT_BUCKET: { Ref: bucketId },
          FANOUT_PREFIX: 'jobs',
          FANOUT_ALLOW: '10.0.0.0/8,internal.example',
          FANOUT_GZIP: 'false',
          FANOUT_SYNC_MAX_ITEMS: '25',
          FANOUT_MAX_ITEMS: '10000',
          FANOUT_MAX_REQUEST_BYTES: String(1024 * 1024),
          FANOUT_RUNNER_FUNCTION: `${STACK_NAME}-runner`,
          FANOUT_STATE_MACHINE_ARN: expect.objectContaining({ 'Fn::Join': expect.any(Array) }),
          FANOUT_MAX_CONTINUATIONS: '7',
          FANOUT_MAP_BATCH_SIZE: '500',
          FANOUT_MAP_CONCURRENCY: '25',
          POWERTOOLS_SERVICE_NAME: 'fanout',
          POWERTOOLS_METRICS_NAMESPACE: 'Fanout',
          POWERTOOLS_LOG_LEVEL: 'INFO',
        },
      });
    }
    template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: `${STACK_NAME}-runner`,
      Environment: {
        Variables: Match.objectLike({
          FANOUT_STATE_MACHINE_ARN: {
            'Fn::Join': ['', Match.arrayWith([`:stateMachine:${STACK_NAME}-large-jobs`])],
          },
        }),
      },
    });
  });

  it("sets log retention on each function's own log group", () => {
    for (const id of [runnerId, apiId]) {
      const loggingConfig = (json.Resources[id]?.Properties?.LoggingConfig ?? {}) as {
        LogGroup?: { Ref: string };
      };
      const logGroup = loggingConfig.LogGroup?.Ref ?? 'missing';
      expect(json.Resources[logGroup]).toMatchObject({
        Type: 'AWS::Logs::LogGroup',
        Properties: { RetentionInDays: 90 },
      });
    }
  });
});

describe('asynchronous invocation of the runner', () => {
  it('retries twice within six hours, then sends the event to the failed-jobs queue', () => {
    const queueId = logicalIdOf(json, 'AWS::SQS::Queue', 'FailedJobs');
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: runnerId },
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 21_600,
      DestinationConfig: { OnFailure: { Destination: arnOf(queueId) } },
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 1_209_600,
    });
  });
});

describe('schedules', () => {
  it('creates one EventBridge schedule per configured entry', () => {
    template.resourceCountIs('AWS::Scheduler::Schedule', 2);
  });

  it('invokes the runner with a Scheduled Event carrying the job, retried, with a DLQ', () => {
    const dlqId = logicalIdOf(json, 'AWS::SQS::Queue', 'SchedulesDeadLetterQueue');
    const input = new Capture();
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: {
        Arn: arnOf(runnerId),
        Input: input,
        RetryPolicy: { MaximumEventAgeInSeconds: 7_200, MaximumRetryAttempts: 5 },
        DeadLetterConfig: { Arn: arnOf(dlqId) },
      },
    });
    const rendered = JSON.stringify(input.asObject());
    for (const fragment of [
      '\\"detail-type\\":\\"Scheduled Event\\"',
      '<aws.scheduler.scheduled-time>',
      '<aws.scheduler.schedule-arn>',
      '\\"detail\\":{\\"items\\":[\\"https://api.example.com/a\\",\\"https://api.example.com/b\\"],\\"options\\":{\\"concurrency\\":4}}',
    ]) {
      expect(rendered).toContain(fragment);
    }
  });

  it('applies the default retry policy (3 attempts within an hour) when none is given', () => {
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 hour)',
      Target: Match.objectLike({ RetryPolicy: { MaximumEventAgeInSeconds: 3_600, MaximumRetryAttempts: 3 } }),
    });
  });
});

describe('HTTP API', () => {
  it.each(['POST /jobs', 'GET /jobs/{id}', 'POST /jobs/{id}/redrive'])(
    'routes %s to the API function with IAM auth',
    (routeKey) => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Route', {
        RouteKey: routeKey,
        AuthorizationType: 'AWS_IAM',
      });
    },
  );

  it('sends other methods on known paths to the handler (405) and every route through IAM', () => {
    const routes = template.findResources('AWS::ApiGatewayV2::Route');
    const keys = Object.values(routes)
      .map((route) => (route.Properties as { RouteKey: string }).RouteKey)
      .sort();
    expect(keys).toEqual([
      'ANY /jobs',
      'ANY /jobs/{id}',
      'ANY /jobs/{id}/redrive',
      'GET /jobs/{id}',
      'POST /jobs',
      'POST /jobs/{id}/redrive',
    ]);
    for (const route of Object.values(routes)) expect(route.Properties?.AuthorizationType).toBe('AWS_IAM');
    template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      IntegrationType: 'AWS_PROXY',
      PayloadFormatVersion: '2.0',
      IntegrationUri: arnOf(apiId),
    });
  });

  it('throttles the default stage and writes access logs', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 },
      AccessLogSettings: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('routeKey') },
    });
  });

  it('uses a JWT authorizer instead when configured', () => {
    const { template: jwt } = synthStack({
      config: { api: { auth: { type: 'jwt', issuer: 'https://issuer.example.com/', audience: ['fanout'] } } },
    });
    jwt.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: { Issuer: 'https://issuer.example.com/', Audience: ['fanout'] },
    });
    const routes = Object.values(jwt.findResources('AWS::ApiGatewayV2::Route'));
    expect(routes.length).toBe(6);
    for (const route of routes) expect(route.Properties?.AuthorizationType).toBe('JWT');
  });
});

describe('alarms', () => {
  it.each([
    ['Errors', 'AWS/Lambda', 1],
    ['Throttles', 'AWS/Lambda', 5],
    ['ApproximateNumberOfMessagesVisible', 'AWS/SQS', 1],
    ['ExecutionsFailed', 'AWS/States', 1],
  ])('alarms on %s (%s) at %d', (metric, namespace, threshold) => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: metric,
      Namespace: namespace,
      Threshold: threshold,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it("watches both dead-letter queues and both functions' throttles", () => {
    template.resourceCountIs('AWS::CloudWatch::Alarm', 6);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: runnerId } }],
    });
  });
});

describe('least privilege', () => {
  type Statement = { Sid?: string; Action: string | string[]; Resource: unknown; Effect: string };
  const statementsOf = (roleOwner: string): Statement[] => {
    const properties = json.Resources[roleOwner]?.Properties ?? {};
    // Functions name their role in `Role`, state machines in `RoleArn`.
    const role = (properties.Role ?? properties.RoleArn) as { 'Fn::GetAtt': [string, string] };
    const roleRef = role['Fn::GetAtt'][0];
    return Object.values(json.Resources)
      .filter((resource) => resource.Type === 'AWS::IAM::Policy')
      .filter((policy) => JSON.stringify(policy.Properties?.Roles) === JSON.stringify([{ Ref: roleRef }]))
      .flatMap(
        (policy) =>
          ((policy.Properties?.PolicyDocument ?? { Statement: [] }) as { Statement: Statement[] }).Statement,
      );
  };
  const actionsOf = (statements: Statement[]) =>
    statements.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])).sort();
  const prefixObjects = () => ({ 'Fn::Join': ['', [arnOf(bucketId), '/jobs/*']] });

  it('lets the runner touch only the job prefix, the listed sources, itself and the state machine', () => {
    const statements = statementsOf(runnerId);
    expect(actionsOf(statements)).toEqual([
      'lambda:InvokeFunction',
      's3:AbortMultipartUpload',
      's3:DeleteObject',
      's3:GetObject',
      's3:GetObject',
      's3:ListBucket',
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:ListMultipartUploadParts',
      's3:PutObject',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
      'sqs:SendMessage',
      'states:StartExecution',
    ]);
    const bySid = Object.fromEntries(statements.filter((s) => s.Sid).map((s) => [s.Sid, s.Resource]));
    expect(bySid.JobObjects).toEqual(prefixObjects());
    expect(JSON.stringify(bySid.InvokeRunner)).toContain(`:function:${STACK_NAME}-runner"`);
    expect(JSON.stringify(bySid.StartLargeJob)).toContain(`:stateMachine:${STACK_NAME}-large-jobs"`);
    expect(JSON.stringify(bySid.ReadSources)).toContain(':s3:::fanout-sources/*');
    // No statement may name every resource.
    for (const statement of statements) expect(statement.Resource).not.toBe('*');
  });

  it('lets the API run small jobs under the prefix, invoke only the runner and start only the state machine', () => {
    const statements = statementsOf(apiId);
    expect(actionsOf(statements)).toEqual([
      'lambda:InvokeFunction',
      's3:AbortMultipartUpload',
      's3:DeleteObject',
      's3:GetObject',
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:ListMultipartUploadParts',
      's3:PutObject',
      'states:StartExecution',
    ]);
    for (const statement of statements) expect(statement.Resource).not.toBe('*');
  });

  it('lets the state machine invoke only the runner and read only the prefix and the listed sources', () => {
    const smId = logicalIdOf(json, 'AWS::StepFunctions::StateMachine', 'LargeJobsStateMachine');
    const statements = statementsOf(smId);
    const invoke = statements.filter((s) => s.Action === 'lambda:InvokeFunction');
    expect(invoke).toEqual([
      expect.objectContaining({ Resource: [arnOf(runnerId), { 'Fn::Join': ['', [arnOf(runnerId), ':*']] }] }),
    ]);
    const reads = statements.filter((s) => s.Action === 's3:GetObject');
    expect(reads).toHaveLength(1);
    expect(JSON.stringify(reads[0]?.Resource)).toContain('/jobs/*');
    expect(JSON.stringify(reads[0]?.Resource)).toContain(':s3:::fanout-sources/*');
    const writes = statements.filter((s) => Array.isArray(s.Action) && s.Action.includes('s3:PutObject'));
    expect(writes.map((s) => s.Resource)).toEqual([
      { 'Fn::Join': ['', [arnOf(bucketId), '/jobs/_executions/*']] },
    ]);
  });
});

describe('cdk-nag (AwsSolutions)', () => {
  it('finds nothing unacknowledged, and every acknowledgement carries a reason', () => {
    const report = synth.validationReport as {
      pluginReports: {
        pluginName: string;
        conclusion: string;
        violations: unknown[];
        suppressedViolations: { ruleName: string; reason: string }[];
      }[];
    };
    const nag = report.pluginReports.find((plugin) => plugin.pluginName === 'AwsSolutions');
    expect(nag?.conclusion).toBe('success');
    expect(nag?.violations).toEqual([]);
    expect(nag?.suppressedViolations.length).toBeGreaterThan(0);
    for (const suppressed of nag?.suppressedViolations ?? []) {
      expect(suppressed.reason.length, suppressed.ruleName).toBeGreaterThan(20);
    }
  });
});

describe('cdk.json', () => {
  it('sets the Distributed Map ResultWriterV2 flag (CDK drops resultWriterV2 silently without it)', () => {
    expect(cdkJsonContext()['@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2']).toBe(true);
  });

  it('runs the app with Node directly (type stripping, no ts-node)', () => {
    const cdkJson = JSON.parse(readFileSync(join(import.meta.dirname, '../../cdk.json'), 'utf8')) as {
      app: string;
    };
    expect(cdkJson.app).toBe('node infra/app.ts');
  });
});
