// Leak checks: what process.getActiveResourcesInfo() holds once it stops changing, and what a run added.

/** The active resources once two looks 20 ms apart agree (the test runner's own timers come and go). */
export async function settledResources(maxRounds = 50): Promise<string[]> {
  let previous = process.getActiveResourcesInfo().sort();
  for (let round = 0; round < maxRounds; round++) {
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
    const current = process.getActiveResourcesInfo().sort();
    if (JSON.stringify(current) === JSON.stringify(previous)) return current;
    previous = current;
  }
  return previous;
}

/** Resources in `after` that `before` did not hold (a multiset difference: two timers are two). */
export function addedResources(before: readonly string[], after: readonly string[]): string[] {
  const left = [...before];
  return after.filter((resource) => {
    const index = left.indexOf(resource);
    if (index < 0) return true;
    left.splice(index, 1);
    return false;
  });
}
