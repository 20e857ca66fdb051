// The fanout CLI as a subprocess for tests: a clean environment, captured output, signals, and the test S3 wired in.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { type LocalWorld, useLocalWorld } from './world.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_MAIN = join(REPO_ROOT, 'functions/cli/main.ts');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Added to a clean environment (no AWS_*, FANOUT_* or CI from the parent). */
  env?: Record<string, string>;
  /** Written to stdin, which is then closed. */
  input?: string;
  cwd?: string;
  /** Kill (SIGKILL) after this long; a safety net, never an assertion. Default 60 s. */
  killAfterMs?: number;
  /** The program to run instead of `node functions/cli/main.ts` (e.g. npm). */
  command?: { file: string; args: string[] };
}

export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stderr satisfies `test` (checked on every chunk); rejects if the process exits first. */
  waitForStderr(test: (stderr: string) => boolean): Promise<void>;
  exited: Promise<CliResult>;
}

/** The parent's environment without anything that would point the CLI at a real account or change its mode. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(AWS_|FANOUT_)/.test(name) || name === 'CI' || name.startsWith('VITEST') || name === 'NODE_OPTIONS')
      continue;
    env[name] = value;
  }
  return { ...env, NO_COLOR: '1', ...extra };
}

/** The settings that send the CLI's S3 traffic to a test fauxqs (any credentials do). */
export function s3Env(endpoint: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
  };
}

export function spawnCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  const file = options.command?.file ?? process.execPath;
  const fullArgs = options.command ? [...options.command.args, ...args] : [CLI_MAIN, ...args];
  const child = spawn(file, fullArgs, {
    cwd: options.cwd ?? REPO_ROOT,
    env: cleanEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    for (const watcher of watchers) watcher();
  });
  if (options.input !== undefined) child.stdin?.end(options.input);
  else child.stdin?.end();
  const killer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? 60_000);
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      for (const watcher of watchers) watcher();
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    waitForStderr: (test) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (test(stderr)) {
            watchers.delete(check);
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            watchers.delete(check);
            reject(new Error(`the CLI exited before the awaited output; stderr:\n${stderr}`));
          }
        };
        watchers.add(check);
        check();
      }),
    exited,
  };
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, options).exited;
}

/** The JSON progress lines (`--progress json`) on stderr. */
export function progressLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{"type":"progress"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A temporary folder for job files and the CLI's `.fanout`; `remove()` deletes it. */
export function tempDir(prefix = 'fanout-cli-'): {
  path: string;
  file(name: string, content: unknown): string;
  remove(): void;
} {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return {
    path,
    file(name, content) {
      const target = join(path, name);
      writeFileSync(target, typeof content === 'string' ? content : JSON.stringify(content));
      return target;
    },
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}

/** What every CLI test file needs: the local world (upstream, test S3) and a temp dir (see useCliWorld). */
export interface CliWorld extends LocalWorld {
  dir: ReturnType<typeof tempDir>;
}

/** Starts a CliWorld before the file's tests and stops it after them; read its fields inside tests only. */
export function useCliWorld(): CliWorld {
  const world = useLocalWorld() as CliWorld;
  beforeAll(() => {
    world.dir = tempDir();
  });
  afterAll(() => world.dir.remove());
  return world;
}
