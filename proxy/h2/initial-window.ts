import { MAX_WINDOW } from './frames.js';

/**
 * A SETTINGS frame's SETTINGS_INITIAL_WINDOW_SIZE entries, applied to the open streams'
 * send windows in one walk (RFC 9113 section 6.9.2: each value changes every open stream's
 * window by its difference with the one before). Entries are applied in turn, so a window
 * ends at `to` (the frame's last value) and passes 2^31-1 exactly when it does at `peak`
 * (the highest): one walk a frame, where a walk an entry made 32 of them for a 201-byte
 * frame, 270 µs of CPU against 1000 open streams (adv14). Used by the frame-level server
 * and the client to the app alike.
 *
 * Returns false, having changed nothing past the stream that would exceed 2^31-1, when
 * one would (a FLOW_CONTROL_ERROR connection error for the caller).
 */
export function applyInitialWindow(streams: Iterable<{ sendWindow: number }>, from: number, to: number, peak: number): boolean {
  const delta = to - from;
  const rise = peak - from;
  for (const st of streams) {
    if (st.sendWindow + rise > MAX_WINDOW) return false;
    st.sendWindow += delta;
  }
  return true;
}
