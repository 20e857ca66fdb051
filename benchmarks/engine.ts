// npm run bench:engine: races fanout against the shared peer bench's contenders in the same run, and prints the figures.
//
//   node benchmarks/engine.ts [--reps 3] [--scenarios S1,S2,S3] [--peers p-limit-undici,seed-aiohttp-nodebug]
//
// The harness (../shared/bench, or FANOUT_BENCH_DIR) is read-only and copies itself to /tmp before it
// runs, so the contender goes in as an absolute path, copied to a temporary `fanout.mjs` (the harness
// names a contender after its file), and finds this repository through FANOUT_ROOT. A second copy,
// `fanout-noguard.mjs`, runs without the destination guard (the engine's benchmark-only seam), so the
// same run prints the guard's cost: the S3-guard line compares the two in S3 (medians).
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    scenarios: { type: 'string', default: 'S1,S2,S3' },
    peers: { type: 'string', default: 'p-limit-undici,seed-aiohttp-nodebug' },
  },
});
const benchDir = process.env.FANOUT_BENCH_DIR ?? resolve(root, '..', 'shared', 'bench');
const runScript = join(benchDir, 'run.sh');
if (!existsSync(runScript)) {
  process.stderr.write(`bench:engine: no peer bench at ${benchDir} (set FANOUT_BENCH_DIR)\n`);
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), 'fanout-bench-'));
const contender = join(work, 'fanout.mjs');
const noGuard = join(work, 'fanout-noguard.mjs');
copyFileSync(join(root, 'benchmarks', 'fanout-contender.mjs'), contender);
copyFileSync(join(root, 'benchmarks', 'fanout-contender.mjs'), noGuard);
const outDir = join(work, 'results');

const args = [
  runScript,
  '--scenarios',
  values.scenarios,
  '--peers',
  `fanout,fanout-noguard,${values.peers}`,
  '--contender',
  contender,
  '--contender',
  noGuard,
  '--reps',
  values.reps,
  '--out',
  outDir,
];
process.stderr.write(`bench:engine: bash ${args.join(' ')}\n`);
const code = await new Promise<number>((done) => {
  const child = spawn('bash', args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, FANOUT_ROOT: root },
  });
  child.once('exit', (exitCode) => done(exitCode ?? 1));
});
if (code !== 0 || !existsSync(join(outDir, 'summary.json'))) {
  process.stderr.write(`bench:engine: the harness failed (exit ${code}); raw output in ${outDir}\n`);
  process.exit(1);
}

interface Row {
  peer: string;
  good: number;
  runs: number;
  wall: number[];
  rps: number[];
  cpuPer1k: number[];
  rss: number[];
  failed: number[];
}
interface Summary {
  scenario: { key: string; n: number; c: number; idealMs: number | null };
  floor: { floorMs: number } | null;
  rows: Row[];
}
const summary = JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')) as {
  summaries: Record<string, Summary>;
};

const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[middle] ?? null)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};
const round = (x: number | null, digits: number): number | null =>
  x === null ? null : Math.round(x * 10 ** digits) / 10 ** digits;
const cell = (x: number | null, digits = 0): string =>
  x === null
    ? 'n/a'
    : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const lines: string[] = [];
const records: Record<string, unknown>[] = [];
for (const [key, { scenario, floor, rows }] of Object.entries(summary.summaries)) {
  lines.push('');
  lines.push(
    `${key}: N=${scenario.n}, C=${scenario.c}` +
      (scenario.idealMs ? `, ideal ${cell(scenario.idealMs)} ms` : '') +
      (floor ? `, floor ${cell(floor.floorMs)} ms` : ''),
  );
  lines.push(
    `${'contender'.padEnd(24)} ${'runs'.padStart(5)} ${'wall ms'.padStart(9)} ${'x ideal'.padStart(8)} ${'x floor'.padStart(8)} ${'req/s'.padStart(8)} ${'CPU ms/1k'.padStart(10)} ${'RSS MB'.padStart(7)} ${'failed'.padStart(7)}`,
  );
  for (const row of [...rows].sort((a, b) => (median(a.wall) ?? 0) - (median(b.wall) ?? 0))) {
    const wall = median(row.wall);
    const ratio = wall !== null && scenario.idealMs ? wall / scenario.idealMs : null;
    const floorRatio = wall !== null && floor ? wall / floor.floorMs : null;
    const rps = median(row.rps);
    const cpu = median(row.cpuPer1k);
    const rss = median(row.rss);
    lines.push(
      `${row.peer.padEnd(24)} ${`${row.good}/${row.runs}`.padStart(5)} ${cell(wall).padStart(9)} ${cell(ratio, 3).padStart(8)} ${cell(floorRatio, 3).padStart(8)} ${cell(rps).padStart(8)} ${cell(cpu, 1).padStart(10)} ${cell(rss, 1).padStart(7)} ${cell(median(row.failed)).padStart(7)}`,
    );
    records.push({
      scenario: key,
      contender: row.peer,
      wall_ms: round(wall, 1),
      ratio: round(ratio, 3),
      floor_ratio: round(floorRatio, 3),
      rps: round(rps, 0),
      cpu_ms_per_1k: round(cpu, 1),
      peak_rss_mb: round(rss, 1),
    });
  }
}
// The guard's cost (issue 4): the same contender with and without the guard, S3 of the same run.
const s3 = summary.summaries.S3?.rows;
const guardOn = s3?.find((row) => row.peer === 'fanout');
const guardOff = s3?.find((row) => row.peer === 'fanout-noguard');
if (guardOn !== undefined && guardOff !== undefined) {
  const rpsGuard = median(guardOn.rps);
  const rpsNoGuard = median(guardOff.rps);
  const cpuGuard = median(guardOn.cpuPer1k);
  const cpuNoGuard = median(guardOff.cpuPer1k);
  const costPct = rpsGuard !== null && rpsNoGuard ? (1 - rpsGuard / rpsNoGuard) * 100 : null;
  const cpuCostPct = cpuGuard !== null && cpuNoGuard ? (cpuGuard / cpuNoGuard - 1) * 100 : null;
  lines.push('');
  lines.push(
    `S3 guard cost: ${cell(rpsGuard)} req/s with the guard, ${cell(rpsNoGuard)} without: ${cell(costPct, 1)}% fewer req/s` +
      ` (CPU per 1k: ${cell(cpuGuard, 1)} vs ${cell(cpuNoGuard, 1)} ms, ${cell(cpuCostPct, 1)}% more); target < 5%`,
  );
  records.push({
    scenario: 'S3-guard',
    rps_guard: round(rpsGuard, 0),
    rps_noguard: round(rpsNoGuard, 0),
    cost_pct: round(costPct, 1),
    cpu_cost_pct: round(cpuCostPct, 1),
  });
}
process.stdout.write(`${lines.join('\n')}\n\n`);
for (const record of records) process.stdout.write(`${JSON.stringify(record)}\n`);
process.stderr.write(`bench:engine: harness results in ${outDir} (summary.md, raw.jsonl)\n`);
// The contender copy goes; the results stay for a closer look.
rmSync(contender, { force: true });
rmSync(noGuard, { force: true });
