// Builds the demo player into dist/player/: the page, our modules (lib/) and dash.js's ESM build
// (vendor/), as plain static files the gateway serves at /player/.
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/player');
const dashjs = path.join(root, 'node_modules/dashjs');
const dashBuild = path.join(dashjs, 'dist/modern/esm/dash.all.min.js');
if (!existsSync(dashBuild)) {
  console.error(`missing ${dashBuild}: run npm ci in clients/js first`);
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(path.join(out, 'lib'), { recursive: true });
mkdirSync(path.join(out, 'vendor'), { recursive: true });
for (const f of ['index.html', 'early.js', 'player.js']) cpSync(path.join(root, 'player', f), path.join(out, f));
for (const f of readdirSync(path.join(root, 'src')).filter((f) => f.endsWith('.js'))) {
  cpSync(path.join(root, 'src', f), path.join(out, 'lib', f));
}
cpSync(dashBuild, path.join(out, 'vendor/dash.all.min.js'));
cpSync(path.join(dashjs, 'LICENSE.md'), path.join(out, 'vendor/dash.js-LICENSE.md'));
const { version } = JSON.parse((await import('node:fs')).readFileSync(path.join(dashjs, 'package.json'), 'utf8'));
console.log(`player built in ${path.relative(process.cwd(), out) || out} (dash.js ${version})`);
