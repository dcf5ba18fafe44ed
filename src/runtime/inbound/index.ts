/**
 * The inbound stage of an IMAP loop: fetch a batch (batch.ts), deliver it to the flow's sink (sinks/), decide what it
 * means (decide.ts, pure), record it in the store and carry it out on the server (commit.ts); processor.ts runs a poll.
 */
