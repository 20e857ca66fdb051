// Test helper: synthesizes the fanout stack once (with cdk.json's context), optionally with cdk-nag, into a temp dir.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseFanoutConfig } from '../../infra/config.ts';
import { PROJECT_ROOT } from '../../infra/fanout-function.ts';
import { FanoutStack } from '../../infra/fanout-stack.ts';

/** Template tests skip bundling (no esbuild): this entry only has to exist. bundle.test.ts bundles the real ones. */
export const STUB_ENTRY = 'test/infra/fixtures/stub-handler.ts';
export const STACK_NAME = 'FanoutTest';

export interface SynthOptions {
  config?: unknown;
  /** true bundles the real handlers with esbuild; false skips bundling and uses the stub entry. */
  bundle?: boolean;
  nag?: boolean;
  /** Extra or overriding context (cdk.json's is always applied first). */
  context?: Record<string, unknown>;
}

export interface Synthesized {
  template: Template;
  /** The raw template JSON. */
  json: CloudFormationTemplate;
  /** The cloud assembly folder; only kept when bundling (the caller removes it), else already deleted. */
  outdir: string;
  /** validation-report.json (policy plugins such as cdk-nag), when one was written. */
  validationReport: unknown;
}

export interface CloudFormationTemplate {
  Resources: Record<
    string,
    { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }
  >;
  Outputs?: Record<string, unknown>;
}

export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(join(PROJECT_ROOT, 'cdk.json'), 'utf8')) as {
    context?: Record<string, unknown>;
  };
  return cdkJson.context ?? {};
}

export function synthStack(options: SynthOptions = {}): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'fanout-cdk-'));
  const bundle = options.bundle ?? false;
  const app = new App({
    outdir,
    context: {
      ...cdkJsonContext(),
      // The CLI sets this by default (sam reads it): each function names its asset folder in aws:asset:path.
      'aws:cdk:enable-asset-metadata': true,
      // An empty list of stacks to bundle: assets are staged unbundled, esbuild never runs.
      ...(bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
      ...options.context,
    },
  });
  const stack = new FanoutStack(app, STACK_NAME, {
    config: parseFanoutConfig(options.config ?? {}),
    ...(bundle ? {} : { entries: { runner: STUB_ENTRY, api: STUB_ENTRY } }),
  });
  // cdk-nag v3 is a policy-validation plugin: any unacknowledged finding makes synth throw, listing them all.
  if (options.nag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const assembly = app.synth();
  const json = assembly.getStackByName(stack.stackName).template as CloudFormationTemplate;
  const reportFile = join(outdir, 'validation-report.json');
  const validationReport: unknown = existsSync(reportFile)
    ? JSON.parse(readFileSync(reportFile, 'utf8'))
    : null;
  if (!bundle) rmSync(outdir, { recursive: true, force: true });
  return { template: Template.fromJSON(json), json, outdir, validationReport };
}

/** The single resource of a type whose logical id starts with `prefix`. */
export function logicalIdOf(json: CloudFormationTemplate, type: string, prefix: string): string {
  const ids = Object.entries(json.Resources)
    .filter(([id, resource]) => resource.Type === type && id.startsWith(prefix))
    .map(([id]) => id);
  if (ids.length !== 1)
    throw new Error(`expected one ${type} named ${prefix}*, found ${ids.join(', ') || 'none'}`);
  return ids[0] as string;
}
