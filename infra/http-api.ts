// The jobs HTTP API: POST /jobs, GET /jobs/{id}, POST /jobs/{id}/redrive; IAM (or JWT) auth and stage throttling.
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer, HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { AuthConfig } from './config.ts';

export interface JobsApiProps {
  handler: lambda.IFunction;
  auth: AuthConfig;
  throttle: { rateLimit: number; burstLimit: number };
  logRetentionDays: number;
}

/** The routes the API function serves, as API Gateway route keys. */
export const JOB_ROUTES = [
  { method: apigw.HttpMethod.POST, path: '/jobs' },
  { method: apigw.HttpMethod.GET, path: '/jobs/{id}' },
  { method: apigw.HttpMethod.POST, path: '/jobs/{id}/redrive' },
] as const;

// HTTP API context variables (REST's jsonWithStandardFields names some HTTP APIs reject at deploy time).
const ACCESS_LOG_FORMAT = AccessLogFormat.custom(
  JSON.stringify({
    requestId: '$context.requestId',
    ip: '$context.identity.sourceIp',
    requestTime: '$context.requestTime',
    routeKey: '$context.routeKey',
    status: '$context.status',
    protocol: '$context.protocol',
    responseLength: '$context.responseLength',
    integrationError: '$context.integrationErrorMessage',
    authorizerError: '$context.authorizer.error',
  }),
);

export class JobsApi extends Construct {
  readonly api: apigw.HttpApi;
  readonly stage: apigw.HttpStage;

  constructor(scope: Construct, id: string, props: JobsApiProps) {
    super(scope, id);
    const authorizer =
      props.auth.type === 'jwt'
        ? new HttpJwtAuthorizer('JwtAuthorizer', props.auth.issuer, { jwtAudience: props.auth.audience })
        : new HttpIamAuthorizer();
    this.api = new apigw.HttpApi(this, 'Api', {
      description: 'fanout jobs API',
      createDefaultStage: false,
      defaultAuthorizer: authorizer,
    });
    const accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetentionDays as logs.RetentionDays,
    });
    this.stage = new apigw.HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: props.throttle,
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(accessLogs),
        format: ACCESS_LOG_FORMAT,
      },
    });
    const integration = new HttpLambdaIntegration('Handler', props.handler);
    for (const route of JOB_ROUTES) {
      this.api.addRoutes({ path: route.path, methods: [route.method], integration });
    }
    // Any other method on a known path reaches the handler too, which answers 405 (API Gateway would say 404).
    for (const path of new Set(JOB_ROUTES.map((route) => route.path))) {
      this.api.addRoutes({ path, methods: [apigw.HttpMethod.ANY], integration });
    }
  }

  /** The base URL of the default stage. */
  get url(): string {
    return this.api.apiEndpoint;
  }
}
