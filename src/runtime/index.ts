/**
 * The daemon at work, by job: daemon/ (wiring, HTTP API, status, metrics, logs), reconcile/ (plans carried out, the
 * watcher), loops/ (supervised IMAP and SMTP loops), inbound/ (poll → sink → storage copy → \Seen), outbound/ (outbox →
 * SMTP), credentials/ (OAuth2 access tokens, kept refresh tokens, sign-ins).
 */
