// The house-defaults Lambda function: Node 24 on arm64, an ESM bundle by the local esbuild, the worker files beside it.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** The repository root: the bundling input, where package-lock.json and infra/bundle-workers.ts live. */
export const PROJECT_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/**
 * The bundle is ESM, but some dependencies are CommonJS and call `require`, `__dirname` (piscina finds its
 * own worker file through it) or `__filename`: this banner gives them the module-relative values they
 * expect. esbuild's renamer keeps bundled top-level names clear of these free references.
 */
export const ESM_BANNER = [
  "import { createRequire as __fanoutCreateRequire } from 'node:module';",
  "import { fileURLToPath as __fanoutFileURLToPath } from 'node:url';",
  "import { dirname as __fanoutDirname } from 'node:path';",
  'const require = __fanoutCreateRequire(import.meta.url);',
  'const __filename = __fanoutFileURLToPath(import.meta.url);',
  'const __dirname = __fanoutDirname(__filename);',
].join(' ');

export interface FanoutFunctionProps {
  /** The handler module (exports `handler`), relative to the project root or absolute. */
  entry: string;
  description: string;
  memoryMb: number;
  timeout: Duration;
  /** null: no reservation (the account's unreserved pool). */
  reservedConcurrency: number | null;
  logRetentionDays: number;
  environment: Record<string, string>;
  /** A fixed name, for a function that must know its own name without a circular reference. */
  functionName?: string;
}

export class FanoutFunction extends Construct {
  readonly function: NodejsFunction;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: FanoutFunctionProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetentionDays as logs.RetentionDays,
    });
    this.function = new NodejsFunction(this, 'Function', {
      entry: props.entry,
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memoryMb,
      timeout: props.timeout,
      ...(props.reservedConcurrency === null
        ? {}
        : { reservedConcurrentExecutions: props.reservedConcurrency }),
      ...(props.functionName === undefined ? {} : { functionName: props.functionName }),
      logGroup: this.logGroup,
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      environment: {
        // Stack traces point at the TypeScript sources through the bundle's source map.
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node24',
        mainFields: ['module', 'main'],
        banner: ESM_BANNER,
        minify: true,
        sourceMap: true,
        // Paths are enough to map a trace; embedding every source would double the asset.
        sourcesContent: false,
        // The SDK is bundled at the version we test with, not the one the runtime happens to ship.
        externalModules: [],
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          // The transform worker and piscina's own worker are separate entries next to index.mjs.
          afterBundling: (inputDir: string, outputDir: string) => [
            `"${process.execPath}" "${join(inputDir, 'infra', 'bundle-workers.ts')}" "${outputDir}"`,
          ],
        },
      },
    });
  }
}
