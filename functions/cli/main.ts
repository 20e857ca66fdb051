// The `fanout` command: registers the commands, runs one, and turns any failure into one stderr line and an exit code.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { demoCommand } from './demo.ts';
import { CliError, EXIT, oneLine } from './errors.ts';
import { invokeCommand } from './invoke.ts';
import { redriveCommand } from './redrive.ts';
import { runCommand } from './run.ts';
import { serveCommand } from './serve.ts';
import { showCommand } from './show.ts';

const PACKAGE = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function buildProgram(): Command {
  return new Command('fanout')
    .description(
      'Fetch many HTTP requests with bounded concurrency, timeouts and retries, transform each response, ' +
        'and stream every outcome to S3 with a manifest written last.',
    )
    .version(PACKAGE.version, '-V, --version')
    .addCommand(runCommand())
    .addCommand(invokeCommand())
    .addCommand(showCommand())
    .addCommand(redriveCommand())
    .addCommand(serveCommand())
    .addCommand(demoCommand())
    .addHelpText(
      'after',
      [
        '',
        'Settings: --bucket or FANOUT_BUCKET, and the standard AWS ones (AWS_REGION, AWS_ENDPOINT_URL_S3 or',
        'AWS_ENDPOINT_URL, credentials). With neither a bucket nor an endpoint, commands use the embedded',
        'local S3 under ./.fanout/ (127.0.0.1 only). Network policy: public addresses on ports 80 and 443;',
        '--allow / FANOUT_ALLOW and --allow-private add destinations.',
        '',
        'Try it: npm start (the demo), then fanout show <jobId>.',
      ].join('\n'),
    );
}

async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  // Usage errors (unknown flag, missing argument) are printed by commander; we only choose the exit code.
  for (const command of [program, ...program.commands]) {
    const help = command === program ? 'fanout --help' : `fanout ${command.name()} --help`;
    // One line, like every other failure: the message, then where the usage is.
    command.exitOverride().configureOutput({
      outputError: (text, write) =>
        write(`fanout: ${text.replace(/^error: /, '').trimEnd()} (see ${help})\n`),
    });
  }
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.OK : EXIT.FATAL;
    process.stderr.write(`fanout: ${oneLine(error)}\n`);
    if (process.env.FANOUT_DEBUG && error instanceof Error && !(error instanceof CliError)) {
      process.stderr.write(`${error.stack ?? ''}\n`);
    }
    return error instanceof CliError ? error.exitCode : EXIT.FATAL;
  }
}

// Exit explicitly once the command is done: a keep-alive socket or a stray timer in a dependency must not
// keep a finished CLI hanging. stdout and stderr are flushed by the commands before they return.
process.exit(await main(process.argv));
