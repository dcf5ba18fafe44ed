import { mkdir, stat, writeFile } from 'node:fs/promises';
import { DEFAULT_DIR } from '../../config/files.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from '../command.js';
import { EXIT, UserError } from '../errors.js';
import { show } from '../output.js';
import { starterFiles } from './init-files.js';

/** The schema shipped with this mailctl (same depth from src/cli/commands and dist/cli/commands). */
export const SCHEMA_FILE = fileURLToPath(new URL('../../../schema/mailctl.schema.json', import.meta.url));

/**
 * The modeline's target: the installed package's schema, relative to the folder. A relative path works offline, in
 * every editor running the YAML language server, and always matches the mailctl version that validates the folder
 * (with mailctl as a dev dependency it is `../node_modules/mailctl/schema/mailctl.schema.json`). The schema's `$id`
 * URL is an identifier, not a promise that the document is served there.
 */
export function schemaRefFrom(dir: string): string {
  return path.relative(path.resolve(dir), SCHEMA_FILE).split(path.sep).join('/');
}

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

export const initCommand: Command = {
  name: 'init',
  summary: 'Write a commented starter folder (one mailbox and its flow) that validates',
  usage: 'mailctl init [DIR] [--force]   (DIR defaults to servers.d)',
  options: { force: { type: 'boolean' } },
  positionals: 1,
  async run({ values, positionals, output }) {
    const dir = positionals[0] ?? DEFAULT_DIR;
    const files = starterFiles(dir, schemaRefFrom(dir)).map((f) => ({ ...f, target: path.join(dir, f.name) }));
    if (values.force !== true) {
      const taken = [];
      for (const f of files) if (await exists(f.target)) taken.push(f.target);
      if (taken.length) {
        throw new UserError(
          `${taken.join(', ')} already exist${taken.length === 1 ? 's' : ''}; nothing was written (--force overwrites)`,
          EXIT.error,
          'file-exists',
        );
      }
    }
    try {
      await mkdir(dir, { recursive: true });
      // `wx` also refuses a file created between the check above and now.
      for (const f of files) await writeFile(f.target, f.content, { flag: values.force === true ? 'w' : 'wx' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UserError(
        `cannot write the starter folder ${dir} (${code ?? (err as Error).message})`,
        EXIT.error,
        code === 'EEXIST' ? 'file-exists' : 'write-failed',
      );
    }
    show(
      output,
      { dir, files: files.map((f) => f.target), schema: schemaRefFrom(dir) },
      {
        text: () => {
          for (const f of files) output.out(`wrote ${f.target}`);
          output.out(`\nNext: edit the hosts and addresses, then check the folder with: mailctl validate --dir ${dir}`);
        },
      },
    );
    return EXIT.ok;
  },
};
