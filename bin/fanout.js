#!/usr/bin/env node
// The `fanout` command: Node 24 runs the TypeScript sources directly (type stripping).
import '../functions/cli/main.ts';
