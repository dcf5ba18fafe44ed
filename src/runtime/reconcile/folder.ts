/**
 * The folder a daemon applies, as a reconcile sees it: parsed and checked (including what this daemon's store can
 * deliver into), reused while its files stay the same; and its git revision, for the apply log.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sortDiagnostics, type Diagnostic } from '../../config/diagnostics.js';
import { folderDigest, readConfigFolder } from '../../config/files.js';
import { loadSources } from '../../config/load.js';
import { storeFindings, type StoreKind } from '../../config/sinks.js';
import { desiredState } from '../../plan/desired.js';
import type { DesiredState } from '../../plan/model.js';

/** What a reconcile needs of the folder: kept between reconciles instead of the parsed YAML documents (far larger). */
export interface LoadedFolder {
  folderDigest: string;
  valid: boolean;
  diagnostics: Diagnostic[];
  desired: DesiredState;
}

const run = promisify(execFile);

/** The folder of one daemon, read again for each reconcile. */
export class ConfigFolder {
  private loaded: LoadedFolder | null = null;

  constructor(
    readonly dir: string,
    private readonly sinks: { store: StoreKind },
  ) {}

  /** The folder as last read, or null before the first read. */
  get last(): LoadedFolder | null {
    return this.loaded;
  }

  /** The folder, parsed and checked; reused while its files are byte-for-byte the same (a no-op stays cheap). */
  async load(): Promise<LoadedFolder> {
    const folder = await readConfigFolder(this.dir);
    const digest = folderDigest(folder.files);
    if (this.loaded?.folderDigest === digest && folder.diagnostics.length === 0) return this.loaded;
    const config = loadSources(folder.files, folder.diagnostics);
    // a flow this daemon's store cannot deliver makes the folder invalid here, naming the flow
    const unfit = storeFindings(config.flows, this.sinks.store);
    this.loaded = {
      folderDigest: config.folderDigest,
      valid: config.valid && unfit.length === 0,
      diagnostics: sortDiagnostics([...config.diagnostics, ...unfit]),
      desired: desiredState(config.servers, config.flows),
    };
    return this.loaded;
  }

  /** Git revision of the folder when it is a checkout, else null. */
  async revision(): Promise<string | null> {
    try {
      const { stdout } = await run('git', ['-C', this.dir, 'rev-parse', 'HEAD'], { timeout: 5_000 });
      return stdout.trim() || null;
    } catch {
      return null;
    }
  }
}
