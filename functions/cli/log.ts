// The core's LogSink for the CLI: warnings and errors as single stderr lines (all levels with --verbose).
import type { LogSink } from '../core/index.ts';

export function createStderrLog(write: (line: string) => void, verbose: boolean): LogSink {
  const emit =
    (level: string, shown: boolean) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (!shown) return;
      const detail = fields && Object.keys(fields).length > 0 ? ` ${safeJson(fields)}` : '';
      write(`fanout: ${level}: ${message}${detail}`);
    };
  return {
    debug: emit('debug', verbose),
    info: emit('info', verbose),
    warn: emit('warn', true),
    error: emit('error', true),
  };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return '[unserializable fields]';
  }
}
