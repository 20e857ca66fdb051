// Bundles what the transform pool loads at run time into a Lambda bundle folder, next to index.mjs:
// `transform-worker.mjs` (the worker with every transform) and `piscina/` (the pool and its own worker).
// Usage: node infra/bundle-workers.ts <outDir>   (CDK calls it from commandHooks.afterBundling)
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const PROJECT_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
/** The same names pool.ts looks for (BUNDLED_WORKER_FILE, BUNDLED_PISCINA_DIR). */
const WORKER_FILE = 'transform-worker.mjs';
const PISCINA_DIR = 'piscina';

/** CommonJS dependencies bundled into ESM (jmespath, user libraries) may still call require. */
const ESM_REQUIRE_BANNER = [
  "import { createRequire as __fanoutCreateRequire } from 'node:module';",
  'const require = __fanoutCreateRequire(import.meta.url);',
].join(' ');

export interface BundleWorkersOptions {
  outDir: string;
  /** The worker entry; tests bundle one with extra transforms. */
  workerEntry?: string;
  minify?: boolean;
}

/** Writes the worker bundle and piscina into `outDir`; returns the files written. */
export async function bundleWorkers(options: BundleWorkersOptions): Promise<string[]> {
  const outDir = resolve(options.outDir);
  const workerEntry = options.workerEntry ?? join(PROJECT_ROOT, 'functions/core/transforms/worker.ts');
  const minify = options.minify ?? true;
  const common = { bundle: true, platform: 'node', target: 'node24', minify, logLevel: 'warning' } as const;

  await build({
    ...common,
    entryPoints: [workerEntry],
    outfile: join(outDir, WORKER_FILE),
    format: 'esm',
    banner: { js: ESM_REQUIRE_BANNER },
    sourcemap: true,
    sourcesContent: false,
  });

  // piscina stays CommonJS in its own folder: it starts its worker by `__dirname + '/worker.js'`,
  // which is only right when its code lives in a real file next to that worker.
  const piscinaMain = createRequire(import.meta.url).resolve('piscina');
  const piscinaOut = join(outDir, PISCINA_DIR);
  await mkdir(piscinaOut, { recursive: true });
  for (const [entry, outfile] of [
    [piscinaMain, 'index.cjs'],
    [join(dirname(piscinaMain), 'worker.js'), 'worker.js'],
  ] as const) {
    await build({
      ...common,
      entryPoints: [entry],
      outfile: join(piscinaOut, outfile),
      format: 'cjs',
      // An optional native module for thread priorities; piscina ignores its absence.
      external: ['@napi-rs/nice'],
    });
  }
  // `worker.js` must load as CommonJS even if a package.json above says "type": "module".
  await writeFile(join(piscinaOut, 'package.json'), '{ "type": "commonjs" }\n');
  return [
    WORKER_FILE,
    `${PISCINA_DIR}/index.cjs`,
    `${PISCINA_DIR}/worker.js`,
    `${PISCINA_DIR}/package.json`,
  ].map((file) => join(outDir, file));
}

if (import.meta.main) {
  const outDir = process.argv[2];
  if (!outDir) {
    process.stderr.write('usage: node infra/bundle-workers.ts <outDir>\n');
    process.exit(1);
  }
  const files = await bundleWorkers({ outDir });
  process.stderr.write(`bundle-workers: wrote ${files.join(', ')}\n`);
}
