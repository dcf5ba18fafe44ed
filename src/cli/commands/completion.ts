import { DEFAULT_DIR, readConfigFolder } from '../../config/files.js';
import { parseFile } from '../../config/parse.js';
import { stringOption, type Command } from '../command.js';
import { completionScript, SHELLS, type Shell } from '../completion.js';
import { EXIT, UserError } from '../errors.js';

/**
 * The `type/shortName` of every EmailServer document in the folder, read from the YAML alone: a file that does not
 * validate yet still offers its ids while it is being fixed.
 */
async function serverIds(dir: string): Promise<string[]> {
  const ids = new Set<string>();
  for (const file of (await readConfigFolder(dir)).files) {
    for (const { value } of parseFile(file).documents) {
      if (value.kind === 'EmailServer' && typeof value.type === 'string' && typeof value.shortName === 'string')
        ids.add(`${value.type}/${value.shortName}`);
    }
  }
  return [...ids].sort();
}

export const completionCommand: Command = {
  name: 'completion',
  summary: "Print a shell completion script: commands, flags and the folder's server ids",
  usage: 'mailctl completion bash|zsh|fish   (e.g. source <(mailctl completion bash))',
  subcommands: SHELLS,
  // --servers [--dir DIR] is what the scripts call for the ids; not offered by the scripts themselves
  options: { servers: { type: 'boolean' }, dir: { type: 'string' } },
  positionals: 1,
  async run({ values, positionals, output, commands }) {
    if (values.servers === true) {
      const ids = await serverIds(stringOption(values, 'dir') ?? DEFAULT_DIR);
      if (ids.length) output.out(ids.join('\n'));
      return EXIT.ok;
    }
    const shell = positionals[0];
    const problem = shell === undefined ? 'name a shell' : `no completion for "${shell}"`;
    if (!SHELLS.includes(shell as Shell))
      throw new UserError(`${problem}: bash, zsh or fish\nusage: ${completionCommand.usage}`);
    output.out(completionScript(shell as Shell, await commands()));
    return EXIT.ok;
  },
};
