/** The inbound crash test (inbound-crash.ts) on the file store: the state folder and a directory sink. */
import { inboundCrashTest } from './inbound-crash.js';

inboundCrashTest('file');
