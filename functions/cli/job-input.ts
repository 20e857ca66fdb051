// Reading a JSON document from a file or stdin ("-"), with parse errors that say where, on one line.
import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { CliError } from './errors.ts';

/** The parsed document and the name to put in messages ("job.json", "stdin"). */
export interface JsonInput {
  source: string;
  value: unknown;
}

export async function readJsonInput(
  path: string,
  stdin: NodeJS.ReadableStream = process.stdin,
): Promise<JsonInput> {
  const source = path === '-' ? 'stdin' : path;
  let raw: string;
  try {
    raw = path === '-' ? await text(stdin) : await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliError(`${source}: no such file`);
    if (code === 'EISDIR') throw new CliError(`${source}: is a directory, not a JSON file`);
    throw new CliError(`${source}: cannot read (${code ?? (error as Error).message})`);
  }
  if (raw.trim() === '') throw new CliError(`${source}: empty, expected a JSON document`);
  try {
    return { source, value: JSON.parse(raw) };
  } catch (error) {
    throw new CliError(`${source}: invalid JSON: ${(error as Error).message}`);
  }
}
