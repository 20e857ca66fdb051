// The cdk-nag AwsSolutions findings this stack accepts, each acknowledged on its construct with the reason.
import { type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { IConstruct } from 'constructs';

export interface NagSubjects {
  bucket: s3.Bucket;
  prefix: string;
  sourceBuckets: readonly string[];
  functions: readonly lambda.Function[];
  stateMachine: sfn.StateMachine;
  queues: readonly IConstruct[];
}

const PACK = 'AwsSolutions::AwsSolutions';

export function addNagSuppressions(stack: Stack, subjects: NagSubjects): void {
  const { bucket, prefix } = subjects;
  const bucketArn = `<${logicalIdOf(bucket)}.Arn>`;
  const jobObjects = `${PACK}-IAM5[Resource::${bucketArn}/${prefix}/*]`;
  const sources = subjects.sourceBuckets.map(
    (name) => `${PACK}-IAM5[Resource::arn:<AWS::Partition>:s3:::${name}/*]`,
  );
  const sourcesReason =
    'Job sources are objects with names chosen per job in the buckets the deployment lists.';
  const jobObjectsReason = `Each job writes its own keys under ${prefix}/<jobId>/: the prefix is the boundary.`;

  acknowledge(
    bucket,
    'S1',
    "Only this stack's roles write here, and CloudTrail data events are the audit path if one is needed.",
  );
  for (const queue of subjects.queues) {
    acknowledge(
      queue,
      'SQS3',
      'This queue is itself a dead-letter destination (failed jobs or undelivered schedules).',
    );
  }
  for (const fn of subjects.functions) {
    const role = fn.role as iam.Role;
    acknowledge(
      role,
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      "The basic execution role only writes the function's own CloudWatch logs.",
    );
    const policy = role.node.tryFindChild('DefaultPolicy');
    if (policy === undefined) continue;
    acknowledgeId(policy, jobObjects, jobObjectsReason);
    for (const id of sources) acknowledgeId(policy, id, sourcesReason);
  }

  const runner = subjects.functions[0];
  const smRole = subjects.stateMachine.role.node.tryFindChild('DefaultPolicy');
  if (smRole !== undefined) {
    acknowledgeId(smRole, jobObjects, 'The map reads JSONL sources the API staged under the job prefix.');
    acknowledgeId(
      smRole,
      `${PACK}-IAM5[Resource::${bucketArn}/${prefix}/_executions/*]`,
      'The ResultWriter names its objects per map run under this prefix.',
    );
    acknowledgeId(
      smRole,
      `${PACK}-IAM5[Resource::*]`,
      'CloudWatch Logs delivery and X-Ray actions do not support resource-level permissions.',
    );
    for (const id of sources) acknowledgeId(smRole, id, sourcesReason);
    if (runner)
      acknowledgeId(
        smRole,
        `${PACK}-IAM5[Resource::<${logicalIdOf(runner)}.Arn>:*]`,
        "CDK grants invoke on the runner's versions too; it is still only the runner.",
      );
  }
  const mapPolicy = subjects.stateMachine.node.tryFindChild('DistributedMapPolicy');
  if (mapPolicy !== undefined) {
    // CDK derives the state machine's name from its ARN inside the policy; cdk-nag prints the raw intrinsic.
    const name = `{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${logicalIdOf(subjects.stateMachine)}"}]}]}`;
    const executions = `arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${name}`;
    const reason = 'Distributed Map child executions get service-chosen names under this state machine only.';
    acknowledgeId(mapPolicy, `${PACK}-IAM5[Resource::${executions}:*]`, reason);
    acknowledgeId(mapPolicy, `${PACK}-IAM5[Resource::${executions}/FanOut:*]`, reason);
  }
  // EventBridge Scheduler's target role is created at the stack level by the LambdaInvoke target.
  for (const child of stack.node.children) {
    if (!child.node.id.startsWith('SchedulerRoleForTarget')) continue;
    const policy = child.node.tryFindChild('DefaultPolicy');
    if (policy && runner) {
      acknowledgeId(
        policy,
        `${PACK}-IAM5[Resource::<${logicalIdOf(runner)}.Arn>:*]`,
        "CDK grants invoke on the runner's versions too; it is still only the runner.",
      );
    }
  }
  acknowledge(
    subjects.stateMachine,
    'SF1',
    'A million-item job makes millions of state transitions: ALL-level logs would cost more than the work. Errors are logged; X-Ray traces the rest.',
  );
}

function acknowledge(scope: IConstruct, rule: string, reason: string): void {
  acknowledgeId(scope, `${PACK}-${rule}`, reason);
}

function acknowledgeId(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id, reason });
}

/** The logical id cdk-nag prints for a construct's CloudFormation resource. */
function logicalIdOf(construct: IConstruct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}
