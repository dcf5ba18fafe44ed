/**
 * The inbound crash test (inbound-crash.ts) on the PostgreSQL store with its sink: each message exactly once as a row
 * of its queue table across every crash.
 */
import { inboundCrashTest } from './inbound-crash.js';

inboundCrashTest('postgres');
