import { schema } from '../../config/schema.js';
import type { Command } from '../command.js';
import { EXIT } from '../errors.js';

export const schemaCommand: Command = {
  name: 'schema',
  summary: 'Print the JSON Schema of the file format',
  usage: 'mailctl schema',
  options: {},
  run({ output }) {
    output.out(JSON.stringify(schema, null, 2));
    return Promise.resolve(EXIT.ok);
  },
};
