/**
 * One file per `mailctl` command (loaded only when it runs, see ../main.ts); commands never import each other: what
 * they share lives one folder up (command.ts, daemon-client.ts, output.ts, render/).
 */
