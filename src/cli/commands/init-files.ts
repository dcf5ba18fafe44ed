/**
 * The starter folder `mailctl init` writes: one mailbox (an IMAP inbox and the SMTP server its agents reply through)
 * and the flow that routes its mail. Every YAML file starts with the yaml-language-server modeline so editors
 * complete and check it; `schemaRef` is where that modeline points.
 */

export interface StarterFile {
  name: string;
  content: string;
}

const modeline = (schemaRef: string) => `# yaml-language-server: $schema=${schemaRef}`;

const mailbox = (schemaRef: string) => `${modeline(schemaRef)}
#
# One mailbox, two servers: the IMAP inbox mailctl polls for customers' mail, and the SMTP
# server agents reply through. Both log in as the same user, so replies come from the address
# the customer wrote to. Replace the example hosts and addresses with yours.
#
# Check the folder:   mailctl validate --dir servers.d
# See what changes:   mailctl plan --dir servers.d --state empty    (first deployment)

kind: EmailServer
type: imap # imap = inbound (polled); smtp = outbound
name: Support inbox # display name, unique among the imap servers
# The identity is type/shortName (imap/support). Keep it once applied: renaming it makes a new server.
shortName: support
host: imap.example.com
# port: 993 # the default with tls: true (143 with tls: false, which requires STARTTLS)
tls: true
auth:
  type: basic
  user: support@example.com
  # Never the password itself: a reference the daemon resolves when it connects. The file must be
  # inside the daemon's --secrets-dir (default /run/secrets); \${env:MAILCTL_SECRET_...} also works.
  password: "\${file:/run/secrets/support-password}"
folder: INBOX # the folder that is polled
storageFolder: ContactStorage # must already exist on the server; a copy of every processed message goes here
flow: support # the EmailFlow in support-flow.yaml
pollSchedule: "* * * * *" # cron, 5 fields (or 6 with seconds first); IDLE notices new mail in between
backfill: unseen # on the first apply, also process the unread mail already there (all | none)
---
kind: EmailServer
type: smtp
name: Support outbox
shortName: support # smtp/support: same short name, other type, other identity
host: smtp.example.com
port: 587 # submission; with tls: false, STARTTLS is required before logging in
tls: false
auth:
  type: basic
  user: support@example.com # for SMTP also the default From address
  password: "\${file:/run/secrets/support-password}"
`;

const flow = (schemaRef: string) => `${modeline(schemaRef)}
#
# How the support inbox's mail is routed to queues. Routes are tried in order; the first match
# wins. Matchers are case-insensitive globs (* = any text), not regular expressions.

kind: EmailFlow
name: support # lowercase letters, digits and dashes; imap servers name it with \`flow: support\`
routes:
  - queue: billing
    when:
      subject: ["*invoice*", "*refund*"] # a list means "any of these"
  - queue: support # the last route has no \`when\`: the default
# Out-of-office answers and bounces: deliver (default, flagged), drop, or a queue of their own.
autoReplies:
  queue: auto-replies
# Where routed mail goes: a directory (absolute, or relative to the daemon's state folder).
deliver:
  directory: inbound/support
`;

const readme = (dir: string, schemaRef: string) => `# ${dir}

The mail servers of this contact centre, managed by [mailctl](https://www.npmjs.com/package/mailctl).
Every \`*.yaml\` file here is read; a file may hold several documents separated by \`---\`.

| file | what it holds |
|---|---|
| \`support.yaml\` | the support mailbox: its IMAP inbox and the SMTP server agents reply through |
| \`support-flow.yaml\` | the flow that routes the inbox's mail to queues |

Each file starts with \`# yaml-language-server: $schema=${schemaRef}\`, so editors with the YAML language
server (VS Code's YAML extension, neovim's yamlls) complete and check it against the installed mailctl's schema.

Next steps:

1. Replace the example hosts and addresses, and create the \`ContactStorage\` folder in the mailbox.
2. \`mailctl validate --dir ${dir}\` checks every file offline (no network, no secrets).
3. Put the password where the reference says (\`/run/secrets/support-password\`), readable by the daemon only.
4. \`mailctl run --dir ${dir}\` starts the daemon; \`mailctl plan --dir ${dir}\` and \`mailctl apply --dir ${dir}\`
   show and apply changes; \`mailctl status\` shows every server.
`;

/** The files of a new folder. `dir` is only used in the README's text; `schemaRef` in every modeline. */
export function starterFiles(dir: string, schemaRef: string): StarterFile[] {
  return [
    { name: 'support.yaml', content: mailbox(schemaRef) },
    { name: 'support-flow.yaml', content: flow(schemaRef) },
    { name: 'README.md', content: readme(dir, schemaRef) },
  ];
}
