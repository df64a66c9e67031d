/**
 * The q-quantile (0 < q < 1) of a histogram given per-bucket counts (`counts[i]` for
 * bucket `bounds[i]`, the last entry the +Inf bucket), as Prometheus' histogram_quantile
 * computes it: linear interpolation inside the bucket the rank falls in, from the
 * previous bound (0 for the first) to this one; a rank in the +Inf bucket gives the
 * largest finite bound. null when the histogram is empty.
 */
export function histogramQuantile(q: number, bounds: readonly number[], counts: readonly number[]): number | null {
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (seen + c >= rank && c > 0) {
      if (i >= bounds.length) return bounds.length > 0 ? bounds[bounds.length - 1] : null;
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * ((rank - seen) / c);
    }
    seen += c;
  }
  return bounds.length > 0 ? bounds[bounds.length - 1] : null;
}
