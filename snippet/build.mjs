// Build the browser runtime: src/main.js → ../src/edge/static/runtime.js (one minified
// IIFE containing the config token exactly once). `node build.mjs` writes the file and
// prints its size; the tests import `bundleRuntime` to check the same output.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';
import { minify } from 'terser';

const here = dirname(fileURLToPath(import.meta.url));

export const CONFIG_TOKEN = '__SPLITEDGE_CONFIG__';
export const OUTPUT = join(here, '..', 'src', 'edge', 'static', 'runtime.js');
// 3200 bytes gzipped (level 9) for the runtime without its config: xxh32, assignment, URL
// patterns, DOM changes and their undo, anti-flicker, redirects, events, goals, SPA routes.
export const GZIP_BUDGET = 3200;
// Browsers from late 2020 on: es2020 syntax (`?.`, `??`, `catch {}`) and the DOM of
// Chrome 86, Firefox 78, Safari 14 (replaceChildren, to undo set_content).
export const TARGET = 'es2020';

/**
 * Bundle the runtime with esbuild (modules into one IIFE), then minify it with terser,
 * whose compressor and top-level mangling save about 3 % (gzipped) over esbuild's minifier.
 * Returns its code. Throws unless the token occurs exactly once.
 */
export async function bundleRuntime() {
  const result = await esbuild.build({
    entryPoints: [join(here, 'src', 'main.js')],
    bundle: true,
    format: 'iife',
    minify: true,
    target: TARGET,
    sourcemap: false,
    legalComments: 'none',
    charset: 'utf8',
    write: false,
    logLevel: 'silent',
  });
  // No `unsafe` transforms: the page may have replaced built-ins.
  const minified = await minify(result.outputFiles[0].text, {
    ecma: 2020,
    module: false,
    toplevel: true,
    compress: { passes: 4, pure_getters: true, unsafe_arrows: true },
    mangle: { toplevel: true },
  });
  const code = minified.code;
  const count = code.split(CONFIG_TOKEN).length - 1;
  if (count !== 1) {
    throw new Error(`the built runtime contains ${CONFIG_TOKEN} ${count} times; it must be exactly once`);
  }
  return code;
}

/** Raw and gzip (level 9, as the edge serves it) sizes in bytes. */
export function sizes(code) {
  const raw = Buffer.from(code);
  return { raw: raw.length, gzip: gzipSync(raw, { level: 9 }).length };
}

async function main() {
  const code = await bundleRuntime();
  mkdirSync(dirname(OUTPUT), { recursive: true });
  writeFileSync(OUTPUT, code);
  const { raw, gzip } = sizes(code);
  console.log(`${OUTPUT}: ${raw} bytes raw, ${gzip} bytes gzipped (budget ${GZIP_BUDGET})`);
  if (gzip > GZIP_BUDGET) {
    console.error(`over the gzip budget of ${GZIP_BUDGET} bytes`);
    process.exitCode = 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error) => {
    console.error(error.message || error);
    process.exitCode = 1;
  });
}
