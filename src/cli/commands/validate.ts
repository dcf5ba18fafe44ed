import { DEFAULT_DIR } from '../../config/files.js';
import { loadConfig } from '../../config/load.js';
import { stringOption, type Command } from '../command.js';
import { EXIT } from '../errors.js';
import { show } from '../output.js';
import { renderDiagnosticsGithub, renderDiagnosticsText, summarizeCounts } from '../render/diagnostics.js';

export const validateCommand: Command = {
  name: 'validate',
  summary: 'Check the configuration folder (offline: no network, no secrets)',
  usage: 'mailctl validate [--dir DIR] [--strict] [--format text|json|github]',
  options: { dir: { type: 'string' }, strict: { type: 'boolean' } },
  async run({ values, output }) {
    const dir = stringOption(values, 'dir') ?? DEFAULT_DIR;
    const config = await loadConfig(dir);
    const warnings = config.diagnostics.filter((d) => d.severity === 'warning').length;
    const valid = config.valid && !(values.strict === true && warnings > 0);
    const counts =
      `${config.servers.length} server${config.servers.length === 1 ? '' : 's'}, ${config.flows.length} ` +
      `flow${config.flows.length === 1 ? '' : 's'} in ${config.fileCount} ` +
      `file${config.fileCount === 1 ? '' : 's'}`;
    const verdict = valid
      ? 'valid'
      : values.strict === true && config.valid
        ? 'invalid (--strict: warnings count as errors)'
        : 'invalid';
    const summary = () => output.out(`${dir}: ${verdict} (${counts}; ${summarizeCounts(config.diagnostics)})`);
    const json = {
      valid,
      diagnostics: config.diagnostics,
      servers: config.servers.length,
      flows: config.flows.length,
      files: config.fileCount,
    };
    show(output, json, {
      text: () => (renderDiagnosticsText(output, config.diagnostics), summary()),
      github: () => (renderDiagnosticsGithub(output, config.diagnostics), summary()),
    });
    return valid ? EXIT.ok : EXIT.error;
  },
};
