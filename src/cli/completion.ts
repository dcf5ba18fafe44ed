/**
 * Shell completion scripts, generated from the real command definitions: every command, its flags (the common ones
 * included), its subcommands, and what a flag's value is. Server ids (`imap/support`) are not baked in: the scripts ask
 * `mailctl completion --servers --dir DIR` for the ids in the folder the command line names (default `servers.d`).
 */
import { COMMON_OPTIONS, LOG_LEVELS, type Command } from './command.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

/** What a value is: completed from the folder's server ids (optionally only one type), paths, or a fixed list. */
export type ValueKind =
  | { kind: 'server'; prefix: string }
  | { kind: 'dir' }
  | { kind: 'file' }
  | { kind: 'words'; words: readonly string[] }
  | { kind: 'free' };

/** Flags whose values can be suggested; any other flag with a value gets none (a URL, an address, a subject...). */
export const FLAG_VALUES: Readonly<Record<string, ValueKind>> = {
  'approve-rebind': { kind: 'server', prefix: '' },
  reauthenticate: { kind: 'server', prefix: '' },
  for: { kind: 'server', prefix: 'imap/' },
  dir: { kind: 'dir' },
  'state-dir': { kind: 'dir' },
  'from-state-dir': { kind: 'dir' },
  'secrets-dir': { kind: 'dir' },
  'token-file': { kind: 'file' },
  out: { kind: 'file' },
  state: { kind: 'file' },
  'system-smtp': { kind: 'file' },
  format: { kind: 'words', words: ['text', 'json', 'github'] },
  'log-level': { kind: 'words', words: LOG_LEVELS },
};

/** The positional argument of commands without subcommands: `init [DIR]`, `apply [PLANFILE]`. */
export const POSITIONAL_VALUES: Readonly<Record<string, ValueKind>> = {
  init: { kind: 'dir' },
  apply: { kind: 'file' },
};

/** Flags for the scripts themselves, not for people. */
export const HIDDEN_FLAGS: Readonly<Record<string, readonly string[]>> = { completion: ['servers', 'dir'] };

export interface CompletionFlag {
  name: string;
  value: ValueKind | null;
  multiple: boolean;
}

export interface CompletionCommand {
  name: string;
  summary: string;
  subcommands: readonly string[];
  positional: ValueKind | null;
  flags: CompletionFlag[];
}

export function completionModel(commands: readonly Command[]): CompletionCommand[] {
  return commands.map((command) => {
    const hidden = HIDDEN_FLAGS[command.name] ?? [];
    const options = { ...command.options, ...COMMON_OPTIONS };
    const flags = Object.entries(options)
      .filter(([name]) => !hidden.includes(name))
      .map(([name, spec]) => ({
        name,
        value: spec.type === 'string' ? (FLAG_VALUES[name] ?? { kind: 'free' as const }) : null,
        multiple: spec.multiple === true,
      }));
    return {
      name: command.name,
      summary: command.summary,
      subcommands: command.subcommands ?? [],
      positional: POSITIONAL_VALUES[command.name] ?? null,
      flags,
    };
  });
}

export function completionScript(shell: Shell, commands: readonly Command[]): string {
  const model = completionModel(commands);
  if (shell === 'bash') return bashScript(model);
  if (shell === 'zsh') return zshScript(model);
  return fishScript(model);
}

/** A single-quoted shell word (bash, zsh): `it's` → `'it'\''s'`. */
const sq = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

// ------------------------------------------------------------------------------------------------------------- bash

function bashValue(value: ValueKind): string {
  switch (value.kind) {
    case 'server':
      return `_mailctl_servers "$dir" ${sq(value.prefix)} "$cur"`;
    case 'dir':
      return 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur"))';
    case 'file':
      return 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))';
    case 'words':
      return `COMPREPLY=($(compgen -W ${sq(value.words.join(' '))} -- "$cur"))`;
    case 'free':
      return ':';
  }
}

function bashScript(model: CompletionCommand[]): string {
  // One case per distinct value action: flags of the same kind share it.
  const byAction = new Map<string, Set<string>>();
  for (const command of model)
    for (const flag of command.flags) {
      if (!flag.value) continue;
      const action = bashValue(flag.value);
      byAction.set(action, (byAction.get(action) ?? new Set()).add(`--${flag.name}`));
    }
  const valueCases = [...byAction].map(([action, flags]) => `    ${[...flags].join('|')}) ${action}; return ;;`);
  const valueFlags = [...byAction.values()].flatMap((flags) => [...flags]).join('|');
  const commandCases = model.map((c) => {
    const flags = c.flags.map((f) => `--${f.name}`).join(' ');
    const first = c.subcommands.length
      ? `COMPREPLY=($(compgen -W ${sq(c.subcommands.join(' '))} -- "$cur"))`
      : c.positional && bashValue(c.positional);
    return [
      `    ${c.name})`,
      `      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W ${sq(flags)} -- "$cur"))`,
      ...(first ? [`      elif [[ -z $sub ]]; then ${first}`] : []),
      '      fi ;;',
    ].join('\n');
  });
  const top = [...model.map((c) => c.name), '--help', '--version'].join(' ');
  return `# bash completion for mailctl (generated by \`mailctl completion bash\`)
# This shell: source <(mailctl completion bash)
# Every shell: mailctl completion bash > ~/.local/share/bash-completion/completions/mailctl

# Server ids (type/shortName) of the folder $1 that start with $2 and with the word being completed, $3.
_mailctl_servers() {
  local id ids
  ids=$("\${COMP_WORDS[0]}" completion --servers --dir "$1" 2>/dev/null) || return 0
  for id in $ids; do
    [[ $id == "$2"* && $id == "$3"* ]] && COMPREPLY+=("$id")
  done
  return 0
}

_mailctl() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  local cmd='' sub='' dir=servers.d i word
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=\${COMP_WORDS[i]}
    case $word in
      --dir) dir=\${COMP_WORDS[i+1]} ;;
      -*) ;;
      *)
        # the value of a flag is neither the command nor its subcommand
        case \${COMP_WORDS[i-1]} in ${valueFlags}) continue ;; esac
        if [[ -z $cmd ]]; then cmd=$word; elif [[ -z $sub ]]; then sub=$word; fi ;;
    esac
  done
  dir=\${dir/#\\~/$HOME}
  case $prev in
${valueCases.join('\n')}
  esac
  case $cmd in
    '') COMPREPLY=($(compgen -W ${sq(top)} -- "$cur")) ;;
${commandCases.join('\n')}
  esac
  return 0
}

complete -F _mailctl mailctl
`;
}

// -------------------------------------------------------------------------------------------------------------- zsh

function zshValue(value: ValueKind, what: string): string {
  switch (value.kind) {
    case 'server':
      // a leading space: _arguments calls it as written, without inserting compadd options before the prefix
      return `:${what}: _mailctl_servers${value.prefix ? ` ${value.prefix}` : ''}`;
    case 'dir':
      return `:${what}:_files -/`;
    case 'file':
      return `:${what}:_files`;
    case 'words':
      return `:${what}:(${value.words.join(' ')})`;
    case 'free':
      return `:${what}: `;
  }
}

function zshScript(model: CompletionCommand[]): string {
  const describe = model.map((c) => `    ${sq(`${c.name}:${c.summary.replace(/:/g, '\\:')}`)}`).join('\n');
  const cases = model.map((c) => {
    const specs = c.flags.map((f) =>
      sq(`${f.multiple ? '*' : ''}--${f.name}${f.value ? zshValue(f.value, f.name) : ''}`),
    );
    if (c.subcommands.length) specs.push(sq(`1:subcommand:(${c.subcommands.join(' ')})`));
    else if (c.positional) specs.push(sq(`1${zshValue(c.positional, 'argument')}`));
    return `        ${c.name}) _arguments -S \\\n          ${specs.join(' \\\n          ')} ;;`;
  });
  return `#compdef mailctl
# zsh completion for mailctl (generated by \`mailctl completion zsh\`)
# This shell: source <(mailctl completion zsh)
# Every shell: mailctl completion zsh > "\${fpath[1]}/_mailctl", then start a new shell

# Server ids (type/shortName) that start with $1, from the folder of the command line's --dir (default servers.d).
_mailctl_servers() {
  local dir=servers.d i
  local -a ids
  for ((i = 1; i < $#words; i++)); do
    [[ $words[i] == --dir ]] && dir=$words[i+1]
  done
  ids=(\${(f)"$($_mailctl_prog completion --servers --dir \${dir/#\\~/$HOME} 2>/dev/null)"})
  ids=(\${(M)ids:#\${1:-}*})
  compadd -a ids
}

_mailctl() {
  local _mailctl_prog=$words[1] curcontext=$curcontext state line
  local -a commands
  commands=(
${describe}
  )
  _arguments -C \\
    '(- *)--help[list the commands]' \\
    '(- *)--version[print the version]' \\
    '1: :->command' \\
    '*:: :->args' && return
  case $state in
    command) _describe -t commands 'mailctl command' commands ;;
    args)
      case $words[1] in
${cases.join('\n')}
      esac ;;
  esac
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _mailctl "$@"
else
  compdef _mailctl mailctl
fi
`;
}

// ------------------------------------------------------------------------------------------------------------- fish

/** A single-quoted fish word: only \\ and ' are escaped. */
const fq = (text: string) => `'${text.replace(/[\\']/g, '\\$&')}'`;

function fishValue(value: ValueKind): string {
  switch (value.kind) {
    case 'server':
      return `-x -a ${fq(`(__mailctl_servers ${value.prefix})`)}`;
    case 'dir':
      return `-x -a ${fq('(__fish_complete_directories (commandline -ct))')}`;
    case 'file':
      return '-r -F';
    case 'words':
      return `-x -a ${fq(value.words.join(' '))}`;
    case 'free':
      return '-x';
  }
}

/** The folder's server ids, from the command line's --dir (`~` expanded); errors are silent while completing. */
const FISH_SERVER_IDS = "$tokens[1] completion --servers --dir (string replace -r '^~' $HOME -- $dir) 2>/dev/null";

function fishScript(model: CompletionCommand[]): string {
  const lines: string[] = [];
  for (const c of model) {
    lines.push(`complete -c mailctl -n __fish_use_subcommand -a ${c.name} -d ${fq(c.summary)}`);
    const seen = fq(`__fish_seen_subcommand_from ${c.name}`);
    for (const f of c.flags)
      lines.push(`complete -c mailctl -n ${seen} -l ${f.name}${f.value ? ` ${fishValue(f.value)}` : ''}`);
    if (c.subcommands.length) {
      const none = fq(
        `__fish_seen_subcommand_from ${c.name}; and not __fish_seen_subcommand_from ${c.subcommands.join(' ')}`,
      );
      lines.push(`complete -c mailctl -n ${none} -a ${fq(c.subcommands.join(' '))}`);
    } else if (c.positional)
      lines.push(`complete -c mailctl -n ${seen} ${fishValue(c.positional).replace(/^-[xr] /, '')}`);
  }
  return `# fish completion for mailctl (generated by \`mailctl completion fish\`)
# This shell: mailctl completion fish | source
# Every shell: mailctl completion fish > ~/.config/fish/completions/mailctl.fish

# Server ids (type/shortName) that start with $argv[1], from the folder of the command line's --dir (default servers.d).
function __mailctl_servers
    set -l tokens (commandline -opc)
    set -l dir servers.d
    set -l i (contains --index -- --dir $tokens)
    and set -q tokens[(math $i + 1)]
    and set dir $tokens[(math $i + 1)]
    ${FISH_SERVER_IDS} | string match -- "$argv[1]*"
end

complete -c mailctl -f
complete -c mailctl -n __fish_use_subcommand -l help -d 'List the commands'
complete -c mailctl -n __fish_use_subcommand -l version -d 'Print the version'
${lines.join('\n')}
`;
}
