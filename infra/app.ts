// The CDK app: one fanout stack, configured from context `fanout` or infra/fanout.config.json.
import { App } from 'aws-cdk-lib';
import { CONTEXT_KEY, loadFanoutConfig } from './config.ts';
import { FanoutStack } from './fanout-stack.ts';

/** The stack's name unless `-c stackName=...` says otherwise (also the prefix of the fixed resource names). */
export const DEFAULT_STACK_NAME = 'Fanout';

const app = new App();
const stackName = String(app.node.tryGetContext('stackName') ?? DEFAULT_STACK_NAME);
new FanoutStack(app, stackName, {
  stackName,
  config: loadFanoutConfig(app.node.tryGetContext(CONTEXT_KEY)),
  description: 'fanout: serverless HTTP fan-out with results in S3',
  // Account and region come from the deploying credentials; synth needs neither.
  env: {
    ...(process.env.CDK_DEFAULT_ACCOUNT ? { account: process.env.CDK_DEFAULT_ACCOUNT } : {}),
    ...(process.env.CDK_DEFAULT_REGION ? { region: process.env.CDK_DEFAULT_REGION } : {}),
  },
});
app.synth();
