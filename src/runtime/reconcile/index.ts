/**
 * The reconciler carries out plans (verify, store the applied state, start/update/stop loops) one at a time, with the
 * folder it reads, the secrets' identities, an apply's verification and its OAuth2 credential moves in files of their
 * own; the watcher turns folder changes, symlink swaps and secret rotations into one debounced reconcile.
 */
