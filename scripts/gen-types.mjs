// Generates src/generated/*.ts from schema/*.schema.json; `--check` fails when the committed output is stale.
import { compile } from 'json-schema-to-typescript';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';

const check = process.argv.includes('--check');
const schemaDir = 'schema';
const outDir = 'src/generated';
await mkdir(outDir, { recursive: true });
const stale = [];

// The comments come from the schema's descriptions and prettier does not wrap comments: wrap them here, leaving room
// for the deepest nesting, so the generated file keeps within 120 columns like the rest of src/.
const COMMENT_WIDTH = 100;
function wrap(text) {
  const lines = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    for (const word of paragraph.split(' ')) {
      if (line && line.length + 1 + word.length > COMMENT_WIDTH) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    lines.push(line);
  }
  return lines.join('\n');
}
function wrapDescriptions(node) {
  if (Array.isArray(node)) return node.map(wrapDescriptions);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node).map(([key, value]) => [
      key,
      key === 'description' && typeof value === 'string' ? wrap(value) : wrapDescriptions(value),
    ]),
  );
}

for (const file of (await readdir(schemaDir)).filter((f) => f.endsWith('.schema.json')).sort()) {
  const schema = wrapDescriptions(JSON.parse(await readFile(path.join(schemaDir, file), 'utf8')));
  const ts = await compile(schema, schema.title ?? file, {
    cwd: schemaDir,
    additionalProperties: false,
    unreachableDefinitions: true,
    bannerComment:
      `/* eslint-disable */\n// GENERATED from ${schemaDir}/${file} by scripts/gen-types.mjs.\n` +
      '// Do not edit: change the schema and run `npm run gen:types`.',
    style: { singleQuote: true },
  });
  const out = path.join(outDir, file.replace(/\.schema\.json$/, '.ts'));
  if ((await readFile(out, 'utf8').catch(() => null)) === ts) continue;
  if (check) stale.push(out);
  else {
    await writeFile(out, ts);
    console.log('wrote', out);
  }
}
if (stale.length) {
  console.error(`stale generated types: ${stale.join(', ')} (run npm run gen:types)`);
  process.exit(1);
}
