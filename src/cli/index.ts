/**
 * The command line: each command parses its flags, talks to the daemon (daemon-client.ts) or reads the folder, and
 * renders the result through one output helper per format (output.ts). Commands decide nothing the daemon decides.
 */
