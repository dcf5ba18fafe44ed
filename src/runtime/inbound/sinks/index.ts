/**
 * Where a flow delivers: the directory sink (.eml + .json pairs, fsynced) and the webhook sink (signed POST). A sink
 * reports per message; a failure of the sink itself (disk full, receiver down) pauses the server instead of counting.
 */
