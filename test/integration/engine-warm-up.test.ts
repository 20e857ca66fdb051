// The engine's import-time warm-up runs requests through the whole request path: it must reach no network
// (no socket connect, no name lookup) and leave nothing behind. Checked in a fresh process, where the
// import really is the first one.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const engine = fileURLToPath(new URL('../../functions/core/engine.ts', import.meta.url));

// Counts every outbound connect and lookup from before the engine loads; then reports what is still open.
const probe = `
import dns from 'node:dns';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
const seen = { connects: [], lookups: [] };
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  seen.connects.push(JSON.stringify(args[0]));
  return connect.apply(this, args);
};
const lookup = dns.lookup;
dns.lookup = (...args) => {
  seen.lookups.push(String(args[0]));
  return lookup(...args);
};
const lookupAsync = dns.promises.lookup;
dns.promises.lookup = (...args) => {
  seen.lookups.push(String(args[0]));
  return lookupAsync(...args);
};
// Named imports of node:dns and node:net see the wrappers too.
syncBuiltinESMExports();
const started = performance.now();
await import(${JSON.stringify(engine)});
const importMs = performance.now() - started;
await new Promise((resolve) => setImmediate(resolve));
console.log(JSON.stringify({ ...seen, active: process.getActiveResourcesInfo(), importMs }));
`;

describe('engine import-time warm-up', () => {
  it('sends nothing to any network and leaves no handle open', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '--eval', probe], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const report = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
      connects: string[];
      lookups: string[];
      active: string[];
    };
    expect(report.connects).toEqual([]);
    expect(report.lookups).toEqual([]);
    // The stdout pipe may show as a handle; no timer, socket or immediate may be left by the warm-up.
    expect(report.active.filter((kind) => !['TTYWrap', 'PipeWrap'].includes(kind))).toEqual([]);
  });
});
