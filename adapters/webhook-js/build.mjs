// Turns the adapter's JavaScript into a WebAssembly component.
//
//   node build.mjs SOURCE.js WIT_DIR WORLD OUT.wasm
//
// build.sh runs a copy of this file placed next to the node_modules folder
// that holds @bytecodealliance/componentize-js (outside the source tree), from
// the source folder as cwd so that relative imports (./logic.js) resolve.
//
// LEADGATE_JS_BINDINGS_DIR=/some/dir only writes the generated glue
// (bindings.debug.js: how every value crosses the boundary) and binary.wasm
// into that folder: componentize-js 0.23.0 fails after writing them when
// debug output is on (it sets a field of an undefined object), so no
// component is written in that mode.
import { mkdir, writeFile, rename } from 'node:fs/promises';
import { componentize } from '@bytecodealliance/componentize-js';

const [sourcePath, witPath, worldName, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: node build.mjs SOURCE.js WIT_DIR WORLD OUT.wasm');
  process.exit(2);
}

const bindingsDir = process.env.LEADGATE_JS_BINDINGS_DIR;
if (bindingsDir) {
  await mkdir(bindingsDir, { recursive: true });
  // In debug mode componentize-js also writes binary.wasm into the cwd:
  // keep it out of the source tree (relative imports still resolve, from
  // the source's own folder).
  process.chdir(bindingsDir);
}

const started = Date.now();
let result;
try {
  result = await componentize({
    sourcePath,
    witPath,
    worldName,
    // Without these the component imports WASI interfaces (wasi:http among
    // them) that the leadgate host does not provide. The adapter reads time
    // from the host's clock import and has no use for WASI randomness.
    disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
    ...(bindingsDir ? { debug: { bindings: true, bindingsDir } } : {}),
  });
} catch (e) {
  if (bindingsDir) {
    console.error(`build.mjs: bindings written to ${bindingsDir}; no component in this mode (${e.message})`);
    process.exit(3);
  }
  throw e;
}
const { component, imports } = result;

// Write next to the target and rename, so a reader never sees half a file.
const tmp = `${out}.tmp-${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, out);
console.error(
  `build.mjs: ${component.byteLength} bytes in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
    `imports: ${[...new Set(imports.map((i) => (Array.isArray(i) ? i[0] : i)))].join(', ')}`,
);
