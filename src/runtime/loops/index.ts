/**
 * Supervised loops, one per enabled server (supervisor.ts): an IMAP loop keeps its connection and polls, an SMTP loop
 * keeps its pooled transport; failures are classified and retried with backoff. Loops report through a LoopRecorder.
 */
