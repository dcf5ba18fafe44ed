/**
 * Progress of a long apply on a terminal: one line on stderr, rewritten in place (`\r` + erase line), cleared when the
 * answer comes. Only for text output to a terminal: JSON, GitHub annotations, pipes and CI logs never see it.
 */
import type { Writable } from 'node:stream';
import type { ApplyProgress } from '../../api/apply.js';

const ERASE_LINE = '\r\u001b[2K';

export interface ProgressLine {
  update(progress: ApplyProgress): void;
  done(): void;
}

export function progressText(p: ApplyProgress): string {
  const failed = p.failed ? `, ${p.failed} failed` : '';
  return (
    `verifying ${p.verified}/${p.total} server${p.total === 1 ? '' : 's'}${failed} ` +
    `(${(p.elapsedMs / 1000).toFixed(1)} s)`
  );
}

export function progressLine(stream: Writable): ProgressLine {
  let shown = false;
  return {
    update(progress) {
      stream.write(`${ERASE_LINE}${progressText(progress)}`);
      shown = true;
    },
    done() {
      if (shown) stream.write(ERASE_LINE);
    },
  };
}
