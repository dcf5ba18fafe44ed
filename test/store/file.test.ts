/** The store contract against the file store (a fresh state folder per test). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openFileStore } from '../../src/store/file/index.js';
import { LocalState } from '../../src/store/local.js';
import { contractTests, LOCK_CHILD } from './contract.js';

const folders: string[] = [];

contractTests('file', {
  async fresh() {
    const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-store-'));
    folders.push(dir);
    const location = path.join(dir, 'state');
    return { location, open: () => openFileStore(new LocalState(location)) };
  },
  holdsQueueRows: false,
  token: 'generated',
  lockChild: (location) => ['--import', 'tsx', LOCK_CHILD, 'file', location],
  cleanup: async () => {
    await Promise.all(folders.map((dir) => rm(dir, { recursive: true, force: true })));
  },
});
