#!/usr/bin/env node
// The `fanout` command. Node 24 runs the TypeScript sources directly (type stripping); an older node
// (npx on a machine whose node is older) hands over to scripts/node24.sh, which fetches Node 24 the way
// the npm scripts do. Plain JavaScript, so any node can read this file.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MAIN = new URL('../functions/cli/main.ts', import.meta.url);

if (Number(process.versions.node.split('.')[0]) >= 24) {
  await import(MAIN.href);
} else {
  const script = fileURLToPath(new URL('../scripts/node24.sh', import.meta.url));
  const child = spawn('sh', [script, fileURLToPath(MAIN), ...process.argv.slice(2)], { stdio: 'inherit' });
  // Ctrl-C reaches the child from the terminal already (one process group): forwarding it would make it
  // a second Ctrl-C, which exits at once. Signals sent to this process alone are passed on.
  const ignore = () => undefined;
  process.on('SIGINT', ignore);
  const forward = (signal) => child.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGHUP', forward);
  child.on('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  });
}
