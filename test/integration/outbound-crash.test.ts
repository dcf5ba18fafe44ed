/** The outbound crash test (outbound-crash.ts) on the file store. */
import { outboundCrashTest } from './outbound-crash.js';

outboundCrashTest('file');
