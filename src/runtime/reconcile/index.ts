/**
 * The reconciler carries out plans (verify, store the applied state, start/update/stop loops) one at a time, and the
 * watcher turns folder changes, symlink swaps and secret rotations into one debounced reconcile.
 */
