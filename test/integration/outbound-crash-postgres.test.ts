/** The outbound crash test (outbound-crash.ts) on the PostgreSQL store. */
import { outboundCrashTest } from './outbound-crash.js';

outboundCrashTest('postgres');
