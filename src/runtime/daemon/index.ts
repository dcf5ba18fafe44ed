/**
 * The daemon's wiring and surface: start.ts builds and connects every part (and decides nothing), http.ts and routes/
 * the API, status and the status page, metrics, logging with the secret scrubber (also applied to every answer and,
 * through scrubbed-store.ts, to everything stored).
 */
