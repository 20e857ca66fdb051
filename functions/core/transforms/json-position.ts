// Where a JSON text first goes wrong. V8's JSON.parse omits the offset for "Unexpected token" and
// "Unexpected end" errors, and an item error must name it; no maintained package does only this.

/** The offset of the first character that makes `text` invalid JSON, or -1 when it is valid. */
export function jsonErrorOffset(text: string): number {
  const length = text.length;
  let i = 0;
  // An explicit stack (not recursion) so a deeply nested body cannot overflow the call stack.
  const stack: Array<'object' | 'array'> = [];
  const skipSpace = () => {
    while (i < length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
  };
  const string = (): boolean => {
    i++;
    while (i < length) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return true;
      }
      if (c < 0x20) return false;
      if (c === 0x5c) {
        // A bad escape fails at the character after the backslash (V8's position too).
        i++;
        const next = text[i];
        if (next === 'u') {
          for (let k = 0; k < 4; k++) {
            i++;
            if (!/[0-9a-fA-F]/.test(text[i] ?? '')) return false;
          }
          i++;
        } else if (next !== undefined && '"\\/bfnrt'.includes(next)) i++;
        else return false;
      } else i++;
    }
    return false;
  };
  const scalar = (): boolean => {
    const c = text[i];
    if (c === '"') return string();
    const word = c === 't' ? 'true' : c === 'f' ? 'false' : c === 'n' ? 'null' : null;
    if (word !== null) {
      // Stop at the first wrong character, as V8 does: `tru}` fails at the `}`.
      let k = 0;
      while (k < word.length && text[i] === word[k]) {
        i++;
        k++;
      }
      return k === word.length;
    }
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!match || match[0] === '' || match[0] === '-') return false;
    i += match[0].length;
    return true;
  };
  // Each loop turn reads one value (opening a container pushes it), then what may follow it.
  for (;;) {
    skipSpace();
    const c = text[i];
    if (c === '{' || c === '[') {
      stack.push(c === '{' ? 'object' : 'array');
      i++;
      skipSpace();
      if (text[i] === (c === '{' ? '}' : ']')) {
        stack.pop();
        i++;
      } else {
        if (c === '{' && !readKey()) return i;
        continue;
      }
    } else if (!scalar()) return i;
    // After a value: close containers or move to the next member.
    for (;;) {
      skipSpace();
      const top = stack.at(-1);
      if (top === undefined) return i < length ? i : -1;
      const next = text[i];
      if (next === ',') {
        i++;
        if (top === 'object' && !readKey()) return i;
        break;
      }
      if ((top === 'object' && next === '}') || (top === 'array' && next === ']')) {
        stack.pop();
        i++;
        continue;
      }
      return i;
    }
  }

  function readKey(): boolean {
    skipSpace();
    if (text[i] !== '"' || !string()) return false;
    skipSpace();
    if (text[i] !== ':') return false;
    i++;
    return true;
  }
}

/** "at position 7 (line 1 column 8)" for a 0-based offset. */
export function describeOffset(text: string, offset: number): string {
  let line = 1;
  let lineStart = 0;
  for (
    let index = text.indexOf('\n');
    index !== -1 && index < offset;
    index = text.indexOf('\n', index + 1)
  ) {
    line++;
    lineStart = index + 1;
  }
  return `at position ${offset} (line ${line} column ${offset - lineStart + 1})`;
}
