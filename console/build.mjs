// Bundles src/ into dist/: dist/index.html and dist/assets/app-<hash>.{js,css}
// (minified, no source maps). The hub embeds dist/ (hub/src/console.rs).
// `node build.mjs --out DIR` writes elsewhere (scripts/test-console.sh checks that the
// committed dist/ is what src/ builds to).
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const outArg = process.argv.indexOf('--out');
const dist = outArg > 0 ? resolve(process.argv[outArg + 1]) : join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });

const result = await build({
  entryPoints: { app: join(root, 'src/main.js') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: join(dist, 'assets'),
  entryNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css) throw new Error(`esbuild wrote ${outputs.join(', ')}: expected one .js and one .css`);
const index = readFileSync(join(root, 'src/index.html'), 'utf8').replace('%JS%', js).replace('%CSS%', css);
writeFileSync(join(dist, 'index.html'), index);
for (const [path, o] of Object.entries(result.metafile.outputs)) console.log(`${basename(path)}\t${(o.bytes / 1024).toFixed(1)} KiB`);
