// An example user transform: the most frequent words of a text body (`options.top`, default 10).
import type { FetchedResponse } from '../core/types.ts';

export default function topWords(response: FetchedResponse, options: Record<string, unknown>) {
  const top = typeof options.top === 'number' ? options.top : 10;
  const text = new TextDecoder().decode(response.body).toLowerCase();
  const counts = new Map<string, number>();
  for (const [word] of text.matchAll(/\p{L}{3,}/gu)) counts.set(word, (counts.get(word) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, top)
    .map(([word, count]) => ({ word, count }));
}
